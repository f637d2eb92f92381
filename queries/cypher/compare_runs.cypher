// name: compare_runs
// question: Two runs (e.g. two models or two layer aggregations) side by side per perturbation: mean |dW|_F, flip rate and mean dp.
// param: run_a string  -- first run id or name
// param: run_b string  -- second run id or name
MATCH (r:Run)
WHERE r.uid IN [$run_a, $run_b] OR r.name IN [$run_a, $run_b]
// @include rows_perturbations
WITH s.kind AS perturbation, CASE WHEN r.uid = $run_a OR r.name = $run_a THEN 'a' ELSE 'b' END AS side, s
WITH perturbation,
     sum(CASE WHEN side = 'a' THEN s.n ELSE 0 END) AS a_examples, sum(CASE WHEN side = 'b' THEN s.n ELSE 0 END) AS b_examples,
     sum(CASE WHEN side = 'a' THEN s.n_dW ELSE 0 END) AS a_n_dW, sum(CASE WHEN side = 'b' THEN s.n_dW ELSE 0 END) AS b_n_dW,
     sum(CASE WHEN side = 'a' THEN s.sum_dW END) AS a_sum_dW, sum(CASE WHEN side = 'b' THEN s.sum_dW END) AS b_sum_dW,
     sum(CASE WHEN side = 'a' THEN s.flips END) AS a_flips, sum(CASE WHEN side = 'b' THEN s.flips END) AS b_flips,
     sum(CASE WHEN side = 'a' THEN s.n_dp ELSE 0 END) AS a_n_dp, sum(CASE WHEN side = 'b' THEN s.n_dp ELSE 0 END) AS b_n_dp,
     sum(CASE WHEN side = 'a' THEN s.sum_dp END) AS a_sum_dp, sum(CASE WHEN side = 'b' THEN s.sum_dp END) AS b_sum_dp
RETURN perturbation, a_examples, b_examples,
       CASE WHEN a_n_dW > 0 THEN a_sum_dW / a_n_dW END AS a_mean_dW_fro,
       CASE WHEN b_n_dW > 0 THEN b_sum_dW / b_n_dW END AS b_mean_dW_fro,
       CASE WHEN a_examples > 0 THEN toFloat(a_flips) / a_examples END AS a_flip_rate,
       CASE WHEN b_examples > 0 THEN toFloat(b_flips) / b_examples END AS b_flip_rate,
       CASE WHEN a_n_dp > 0 THEN a_sum_dp / a_n_dp END AS a_mean_dp,
       CASE WHEN b_n_dp > 0 THEN b_sum_dp / b_n_dp END AS b_mean_dp
ORDER BY perturbation
