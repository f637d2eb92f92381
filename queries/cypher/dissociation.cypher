// name: dissociation
// question: Which perturbations dissociate dW from the answer (large |dW|_F but the answer unchanged), and which change the answer? (spec Q2)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: quantile float = 0.75 [0..1]  -- "large" means |dW|_F above this quantile of all (example, perturbation) pairs of the run
// @include run_scope
// @include rows_run
// percentileCont($quantile) of the run's |dW|_F, as Neo4j computes it, from two entries of the sorted list
WITH r, s.dW_sorted AS xs, $quantile * (size(s.dW_sorted) - 1) AS pos
WITH r, xs, pos, toInteger(floor(pos)) AS lo, toInteger(ceil(pos)) AS hi
WITH r, CASE WHEN size(xs) = 0 THEN null WHEN $quantile = 1.0 OR size(xs) = 1 THEN xs[size(xs) - 1]
             WHEN lo = hi THEN xs[lo] ELSE xs[lo] * (hi - pos) + xs[hi] * (pos - lo) END AS threshold
// @include rows_dW
// how many of each sorted list lie above the threshold: its size minus the first index past it (bisection)
WITH threshold, s.kind AS perturbation, s,
     [xs IN [s.dW_sorted, s.dW_changed_sorted, s.dW_kept_sorted] |
       CASE WHEN threshold IS NULL THEN 0 ELSE size(xs) - reduce(b = [0, size(xs)], k IN range(1, 40) |
         CASE WHEN b[0] >= b[1] THEN b WHEN xs[(b[0] + b[1]) / 2] > threshold THEN [b[0], (b[0] + b[1]) / 2]
              ELSE [(b[0] + b[1]) / 2 + 1, b[1]] END)[0] END] AS above
WITH perturbation, threshold, sum(s.n) AS examples, sum(above[0]) AS large_dW, sum(above[1]) AS large_dW_answer_changed,
     sum(above[2]) AS large_dW_answer_kept, sum(s.flips) AS answer_changed
RETURN perturbation, threshold AS large_dW_threshold, examples, large_dW, large_dW_answer_kept, large_dW_answer_changed,
       answer_changed, toFloat(answer_changed) / examples AS flip_rate
ORDER BY large_dW_answer_kept DESC, perturbation
