// name: method_faithfulness
// question: Which explanation is faithful? Per attribution method (optionally per question type): deletion and insertion AUC with their ratios to a random order, comprehensiveness, sufficiency, causal faithfulness (Pearson r of the method's |dW|_F vs |dp|) and Jaccard stability, with counts. Runs ingested with --attributions only. (spec section 7; `stcg metrics --by-method` adds Spearman and bootstrap intervals)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: by_question_type bool = false  -- one row per method and question type (false: per method over the whole run)
// param: min_examples int = 1 [1..]  -- groups with fewer examples are left out
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_EXPLANATION]->(x:Explanation)
WHERE e.complete
WITH x.method AS method, CASE WHEN $by_question_type THEN e.question_type END AS question_type, x
WITH method, question_type, count(x) AS examples, count(x.deletion_auc) AS scored, collect(x) AS xs,
     avg(x.deletion_auc) AS deletion_auc, avg(x.deletion_auc_random) AS deletion_auc_random,
     avg(x.insertion_auc) AS insertion_auc, avg(x.insertion_auc_random) AS insertion_auc_random,
     avg(x.comprehensiveness) AS comprehensiveness, avg(x.sufficiency) AS sufficiency,
     avg(x.stability_jaccard) AS jaccard_stability
WHERE examples >= $min_examples
CALL (xs) {
  UNWIND xs AS x
  MATCH (x)-[u:UNDER]->(p:Perturbation)
  WHERE u.dW_fro IS NOT NULL
  RETURN count(u) AS pairs, sum(u.dW_fro) AS sx, sum(p.abs_dp) AS sy, sum(u.dW_fro * p.abs_dp) AS sxy,
         sum(u.dW_fro * u.dW_fro) AS sxx, sum(p.abs_dp * p.abs_dp) AS syy
}
RETURN method, question_type, examples, scored,
       deletion_auc, CASE WHEN deletion_auc_random > 0 THEN deletion_auc / deletion_auc_random END AS deletion_ratio,
       insertion_auc, CASE WHEN insertion_auc_random > 0 THEN insertion_auc / insertion_auc_random END AS insertion_ratio,
       comprehensiveness, sufficiency,
       CASE WHEN pairs >= 3 AND (pairs * sxx - sx * sx) * (pairs * syy - sy * sy) > 0
            THEN (pairs * sxy - sx * sy) / sqrt((pairs * sxx - sx * sx) * (pairs * syy - sy * sy)) END
         AS causal_faithfulness_pearson,
       pairs AS causal_pairs, jaccard_stability
ORDER BY question_type, deletion_ratio, method
