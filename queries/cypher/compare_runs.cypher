// name: compare_runs
// question: Two runs (e.g. two models or two layer aggregations) side by side per perturbation: mean |dW|_F, flip rate and mean dp.
// param: run_a string  -- first run id or name
// param: run_b string  -- second run id or name
MATCH (r:Run)
WHERE r.uid IN [$run_a, $run_b] OR r.name IN [$run_a, $run_b]
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
WITH p.kind AS perturbation, CASE WHEN r.uid = $run_a OR r.name = $run_a THEN 'a' ELSE 'b' END AS side, p
WITH perturbation,
     avg(CASE WHEN side = 'a' THEN p.dW_fro END) AS a_mean_dW_fro, avg(CASE WHEN side = 'b' THEN p.dW_fro END) AS b_mean_dW_fro,
     avg(CASE WHEN side = 'a' THEN CASE WHEN p.answer_changed THEN 1.0 ELSE 0.0 END END) AS a_flip_rate,
     avg(CASE WHEN side = 'b' THEN CASE WHEN p.answer_changed THEN 1.0 ELSE 0.0 END END) AS b_flip_rate,
     avg(CASE WHEN side = 'a' THEN p.dp END) AS a_mean_dp, avg(CASE WHEN side = 'b' THEN p.dp END) AS b_mean_dp,
     sum(CASE WHEN side = 'a' THEN 1 ELSE 0 END) AS a_examples, sum(CASE WHEN side = 'b' THEN 1 ELSE 0 END) AS b_examples
RETURN perturbation, a_examples, b_examples, a_mean_dW_fro, b_mean_dW_fro, a_flip_rate, b_flip_rate, a_mean_dp, b_mean_dp
ORDER BY perturbation
