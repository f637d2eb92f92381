// name: perturbation_summary
// question: Per perturbation, what are the mean |dW|_F, the answer flip rate and the mean dp, with counts? (spec Q6)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
RETURN p.kind AS perturbation, count(*) AS examples,
       avg(p.dW_fro) AS mean_dW_fro, stDev(p.dW_fro) AS sd_dW_fro,
       avg(CASE WHEN p.answer_changed THEN 1.0 ELSE 0.0 END) AS flip_rate,
       avg(p.dp) AS mean_dp, avg(p.abs_dp) AS mean_abs_dp
ORDER BY mean_dW_fro DESC
