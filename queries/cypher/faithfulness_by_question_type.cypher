// name: faithfulness_by_question_type
// question: Per question type: causal faithfulness (Pearson r of |dW|_F vs |dp|), deletion AUC ratio and Jaccard stability. (spec Q7, `stcg metrics` adds Spearman and bootstrap intervals)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: min_examples int = 3 [1..]  -- question types with fewer examples are left out
// @include run_scope
// @include rows_examples
WITH r, s.question_type AS question_type, sum(s.examples) AS examples, sum(s.sum_deletion_auc) AS auc_sum,
     sum(s.sum_deletion_auc_random) AS auc_random_sum, sum(s.sum_jaccard) AS jaccard_sum, sum(s.n_jaccard) AS n_jaccard
WHERE examples >= $min_examples
WITH r, collect({question_type: question_type, examples: examples, auc_sum: auc_sum, auc_random_sum: auc_random_sum,
                 jaccard_stability: CASE WHEN n_jaccard > 0 THEN jaccard_sum / n_jaccard END}) AS groups
// @include rows_perturbations
WITH groups, s.question_type AS question_type, sum(s.n) AS n, sum(s.sum_dW) AS sx, sum(s.sum_abs_dp) AS sy,
     sum(s.sum_dW_abs_dp) AS sxy, sum(s.sumsq_dW) AS sxx, sum(s.sumsq_abs_dp) AS syy
WITH [g IN groups WHERE g.question_type = question_type OR (g.question_type IS NULL AND question_type IS NULL)][0] AS g,
     n, sx, sy, sxy, sxx, syy
WHERE g IS NOT NULL
RETURN g.question_type AS question_type, g.examples AS examples,
       CASE WHEN (n * sxx - sx * sx) * (n * syy - sy * sy) > 0
            THEN (n * sxy - sx * sy) / sqrt((n * sxx - sx * sx) * (n * syy - sy * sy)) END AS pearson_dW_abs_dp,
       CASE WHEN g.auc_random_sum > 0 THEN g.auc_sum / g.auc_random_sum END AS deletion_auc_ratio,
       g.jaccard_stability AS jaccard_stability
ORDER BY examples DESC, question_type
