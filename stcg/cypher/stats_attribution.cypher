// stats: attribution
// One row per (correct, grid, grid_cols) of r's complete examples: attribution_sum, the element-wise sum of the
// n_attribution examples' region attributions (Example.attribution). Summed one row per region and
// counted once per example, at region 0: no list of every example's attribution is ever held.
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
WITH r, e.correct AS correct, e.grid AS grid, coalesce(e.grid_cols, e.grid) AS grid_cols,
     e.attribution AS attribution  // read each list once
UNWIND CASE WHEN size(attribution) > 0 THEN range(0, size(attribution) - 1) ELSE [0] END AS idx
WITH r, correct, grid, grid_cols, idx,
     count(CASE WHEN idx = 0 THEN attribution END) AS n_attribution, sum(attribution[idx]) AS total
ORDER BY idx
WITH r, correct, grid, grid_cols, sum(n_attribution) AS n_attribution, collect(total) AS attribution_sum
WITH r, {correct: correct, grid: grid, grid_cols: grid_cols, n_attribution: n_attribution,
         attribution_sum: CASE WHEN n_attribution > 0 THEN attribution_sum ELSE [] END} AS s
