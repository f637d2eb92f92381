// stats: perturbations
// One row per (perturbation kind, question type) of r's complete examples: s, a map of counts and
// sums from which every per-perturbation template's means, rates, standard deviations and
// correlations follow. Nulls are left out of sums and counted apart (n_*), as Cypher's avg, sum and
// stDev do.
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
WITH r, p.kind AS kind, e.question_type AS question_type, count(p) AS n,
     sum(CASE WHEN p.answer_changed THEN 1 ELSE 0 END) AS flips,
     count(p.dW_fro) AS n_dW, sum(p.dW_fro) AS sum_dW, sum(p.dW_fro * p.dW_fro) AS sumsq_dW,
     count(p.dp) AS n_dp, sum(p.dp) AS sum_dp,
     count(p.abs_dp) AS n_abs_dp, sum(p.abs_dp) AS sum_abs_dp, sum(p.abs_dp * p.abs_dp) AS sumsq_abs_dp,
     sum(p.dW_fro * p.abs_dp) AS sum_dW_abs_dp
WITH r, {kind: kind, question_type: question_type, n: n, flips: flips, n_dW: n_dW, sum_dW: sum_dW,
         sumsq_dW: sumsq_dW, n_dp: n_dp, sum_dp: sum_dp, n_abs_dp: n_abs_dp, sum_abs_dp: sum_abs_dp,
         sumsq_abs_dp: sumsq_abs_dp, sum_dW_abs_dp: sum_dW_abs_dp} AS s
