// name: wrong_answer_regions
// question: Which regions (grid row, col) do answers attend to when they are wrong, compared with when they are right?
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: limit int = 20 [1..]  -- regions, by the largest excess attribution in wrong answers
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete AND e.correct IS NOT NULL
WITH e.grid AS grid, e.correct AS correct, e.attribution AS attribution
UNWIND range(0, size(attribution) - 1) AS idx
WITH grid, idx,
     avg(CASE WHEN NOT correct THEN attribution[idx] END) AS wrong_attribution,
     avg(CASE WHEN correct THEN attribution[idx] END) AS right_attribution,
     count(CASE WHEN NOT correct THEN 1 END) AS wrong_examples,
     count(CASE WHEN correct THEN 1 END) AS right_examples
RETURN idx / grid AS row, idx % grid AS col, wrong_attribution, right_attribution,
       coalesce(wrong_attribution, 0.0) - coalesce(right_attribution, 0.0) AS excess, wrong_examples, right_examples
ORDER BY excess DESC, row, col
LIMIT $limit
