// name: claim_dissociation
// question: Claim 3: which perturbations dissociate, moving the weights about as much as the largest (mean |dW|_F relative to the largest) while leaving the answer unchanged (low flip rate)? Point estimates; `stcg claims` decides on 95% intervals
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: min_relative_dW float = 0.5 [0..1]  -- "comparable |dW|": mean |dW|_F at least this fraction of the largest
// param: max_flip_rate float = 0.1 [0..1]  -- "answer unchanged": flip rate at most this
// @include run_scope
// @include rows_perturbations
WITH s.kind AS perturbation, sum(s.n) AS examples, sum(s.n_dW) AS n_dW, sum(s.sum_dW) AS sum_dW, sum(s.flips) AS flips
WITH perturbation, examples, CASE WHEN n_dW > 0 THEN sum_dW / n_dW END AS mean_dW_fro,
     toFloat(flips) / examples AS flip_rate
WITH collect({perturbation: perturbation, examples: examples, mean_dW_fro: mean_dW_fro, flip_rate: flip_rate}) AS rows,
     max(mean_dW_fro) AS largest
UNWIND rows AS row
WITH row, CASE WHEN largest > 0 THEN row.mean_dW_fro / largest END AS relative_dW
RETURN row.perturbation AS perturbation, row.examples AS examples, row.mean_dW_fro AS mean_dW_fro, relative_dW,
       row.flip_rate AS flip_rate,
       coalesce(relative_dW >= $min_relative_dW AND row.flip_rate <= $max_flip_rate, false) AS dissociates_at_point_estimates
ORDER BY relative_dW DESC, perturbation
