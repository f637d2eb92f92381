// name: wrong_answer_regions
// question: Which regions (grid row, col) do answers attend to when they are wrong, compared with when they are right?
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: limit int = 20  -- regions, by the largest excess attribution in wrong answers
MATCH (r:Run)
WHERE CASE WHEN $run_id IS NULL THEN r.status = 'complete' ELSE r.uid = $run_id OR r.name = $run_id END
WITH r ORDER BY r.finished_at DESC LIMIT 1
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_REGION]->(g:Region)
WHERE e.complete AND e.correct IS NOT NULL
WITH g.row AS row, g.col AS col,
     avg(CASE WHEN NOT e.correct THEN g.attribution END) AS wrong_attribution,
     avg(CASE WHEN e.correct THEN g.attribution END) AS right_attribution,
     count(DISTINCT CASE WHEN NOT e.correct THEN e END) AS wrong_examples,
     count(DISTINCT CASE WHEN e.correct THEN e END) AS right_examples
RETURN row, col, wrong_attribution, right_attribution,
       coalesce(wrong_attribution, 0.0) - coalesce(right_attribution, 0.0) AS excess, wrong_examples, right_examples
ORDER BY excess DESC, row, col
LIMIT $limit
