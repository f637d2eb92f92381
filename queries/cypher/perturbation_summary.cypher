// name: perturbation_summary
// question: Per perturbation, what are the mean |dW|_F, the answer flip rate and the mean dp, with counts? (spec Q6)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
// @include rows_perturbations
WITH s.kind AS perturbation, sum(s.n) AS examples, sum(s.flips) AS flips, sum(s.n_dW) AS n_dW,
     sum(s.sum_dW) AS sum_dW, sum(s.sumsq_dW) AS sumsq_dW, sum(s.n_dp) AS n_dp, sum(s.sum_dp) AS sum_dp,
     sum(s.n_abs_dp) AS n_abs_dp, sum(s.sum_abs_dp) AS sum_abs_dp
WITH perturbation, examples, flips, n_dp, sum_dp, n_abs_dp, sum_abs_dp,
     CASE WHEN n_dW > 0 THEN sum_dW / n_dW END AS mean_dW_fro,
     CASE WHEN n_dW > 1 THEN (sumsq_dW - sum_dW * sum_dW / n_dW) / (n_dW - 1) WHEN n_dW = 1 THEN 0.0 END AS var_dW
RETURN perturbation, examples, mean_dW_fro, CASE WHEN var_dW > 0 THEN sqrt(var_dW) ELSE 0.0 END AS sd_dW_fro,
       toFloat(flips) / examples AS flip_rate,
       CASE WHEN n_dp > 0 THEN sum_dp / n_dp END AS mean_dp, CASE WHEN n_abs_dp > 0 THEN sum_abs_dp / n_abs_dp END AS mean_abs_dp
ORDER BY mean_dW_fro DESC, perturbation
