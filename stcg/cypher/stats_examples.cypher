// stats: examples
// One row per (question type, answer type, correct, grid, grid_cols) of r's complete examples: s.examples and
// the sums of deletion AUC, random deletion AUC and Jaccard stability (with n_jaccard, its non-null
// count).
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
WITH r, e.question_type AS question_type, e.answer_type AS answer_type, e.correct AS correct, e.grid AS grid,
     coalesce(e.grid_cols, e.grid) AS grid_cols,
     count(e) AS examples, sum(e.deletion_auc) AS sum_deletion_auc,
     sum(e.deletion_auc_random) AS sum_deletion_auc_random,
     count(e.stability_jaccard) AS n_jaccard, sum(e.stability_jaccard) AS sum_jaccard
WITH r, {question_type: question_type, answer_type: answer_type, correct: correct, grid: grid, grid_cols: grid_cols,
         examples: examples, sum_deletion_auc: sum_deletion_auc, sum_deletion_auc_random: sum_deletion_auc_random,
         n_jaccard: n_jaccard, sum_jaccard: sum_jaccard} AS s
