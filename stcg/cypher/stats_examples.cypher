// stats: examples
// One row per (question type, answer type, correct, grid) of r's complete examples: s.examples and
// the sums of deletion AUC, random deletion AUC and Jaccard stability (with n_jaccard, its non-null
// count), and attribution_sum, the element-wise sum of the n_attribution region attributions (one
// row per region while summing, counted once per example at region 0: no list of every example's
// attribution is ever held).
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
UNWIND CASE WHEN size(e.attribution) > 0 THEN range(0, size(e.attribution) - 1) ELSE [0] END AS idx
WITH r, e.question_type AS question_type, e.answer_type AS answer_type, e.correct AS correct, e.grid AS grid, idx,
     sum(CASE WHEN idx = 0 THEN 1 ELSE 0 END) AS examples,
     sum(CASE WHEN idx = 0 THEN e.deletion_auc END) AS sum_deletion_auc,
     sum(CASE WHEN idx = 0 THEN e.deletion_auc_random END) AS sum_deletion_auc_random,
     count(CASE WHEN idx = 0 THEN e.stability_jaccard END) AS n_jaccard,
     sum(CASE WHEN idx = 0 THEN e.stability_jaccard END) AS sum_jaccard,
     count(CASE WHEN idx = 0 THEN e.attribution END) AS n_attribution, sum(e.attribution[idx]) AS attribution
ORDER BY idx
WITH r, question_type, answer_type, correct, grid, sum(examples) AS examples, sum(sum_deletion_auc) AS sum_deletion_auc,
     sum(sum_deletion_auc_random) AS sum_deletion_auc_random, sum(n_jaccard) AS n_jaccard, sum(sum_jaccard) AS sum_jaccard,
     sum(n_attribution) AS n_attribution, collect(attribution) AS attribution_sum
WITH r, {question_type: question_type, answer_type: answer_type, correct: correct, grid: grid,
         examples: examples, sum_deletion_auc: sum_deletion_auc, sum_deletion_auc_random: sum_deletion_auc_random,
         n_jaccard: n_jaccard, sum_jaccard: sum_jaccard, n_attribution: n_attribution,
         attribution_sum: CASE WHEN n_attribution > 0 THEN attribution_sum ELSE [] END} AS s
