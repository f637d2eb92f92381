// name: wrong_answer_regions
// question: Which regions (grid row, col) do answers attend to when they are wrong, compared with when they are right?
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: limit int = 20 [1..]  -- regions, by the largest excess attribution in wrong answers
// @include run_scope
// @include rows_attribution
WITH s
WHERE s.correct IS NOT NULL AND s.n_attribution > 0
UNWIND range(0, size(s.attribution_sum) - 1) AS idx
WITH s.grid AS grid, coalesce(s.grid_cols, s.grid) AS grid_cols, idx,
     sum(CASE WHEN NOT s.correct THEN s.attribution_sum[idx] END) AS wrong_sum,
     sum(CASE WHEN s.correct THEN s.attribution_sum[idx] END) AS right_sum,
     sum(CASE WHEN NOT s.correct THEN s.n_attribution ELSE 0 END) AS wrong_examples,
     sum(CASE WHEN s.correct THEN s.n_attribution ELSE 0 END) AS right_examples
WITH grid, grid_cols, idx, wrong_examples, right_examples,
     CASE WHEN wrong_examples > 0 THEN wrong_sum / wrong_examples END AS wrong_attribution,
     CASE WHEN right_examples > 0 THEN right_sum / right_examples END AS right_attribution
RETURN idx / grid_cols AS row, idx % grid_cols AS col, wrong_attribution, right_attribution,
       coalesce(wrong_attribution, 0.0) - coalesce(right_attribution, 0.0) AS excess, wrong_examples, right_examples
ORDER BY excess DESC, row, col
LIMIT $limit
