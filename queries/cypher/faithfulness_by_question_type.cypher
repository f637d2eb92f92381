// name: faithfulness_by_question_type
// question: Per question type: causal faithfulness (Pearson r of |dW|_F vs |dp|), deletion AUC ratio and Jaccard stability. (spec Q7, `stcg metrics` adds Spearman and bootstrap intervals)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: min_examples int = 3 [1..]  -- question types with fewer examples are left out
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
WITH e.question_type AS question_type, count(e) AS examples, collect(e) AS es,
     sum(e.deletion_auc) AS auc_sum, sum(e.deletion_auc_random) AS auc_random_sum, avg(e.stability_jaccard) AS jaccard_stability
WHERE examples >= $min_examples
UNWIND es AS e
MATCH (e)-[:HAS_PERTURBATION]->(p:Perturbation)
WITH question_type, examples, auc_sum, auc_random_sum, jaccard_stability, count(p) AS n,
     sum(p.dW_fro) AS sx, sum(p.abs_dp) AS sy, sum(p.dW_fro * p.abs_dp) AS sxy,
     sum(p.dW_fro * p.dW_fro) AS sxx, sum(p.abs_dp * p.abs_dp) AS syy
RETURN question_type, examples,
       CASE WHEN (n * sxx - sx * sx) * (n * syy - sy * sy) > 0
            THEN (n * sxy - sx * sy) / sqrt((n * sxx - sx * sx) * (n * syy - sy * sy)) END AS pearson_dW_abs_dp,
       CASE WHEN auc_random_sum > 0 THEN auc_sum / auc_random_sum END AS deletion_auc_ratio,
       jaccard_stability
ORDER BY examples DESC, question_type
