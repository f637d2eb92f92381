// name: dissociation
// question: Which perturbations dissociate dW from the answer (large |dW|_F but the answer unchanged), and which change the answer? (spec Q2)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: quantile float = 0.75 [0..1]  -- "large" means |dW|_F above this quantile of all (example, perturbation) pairs of the run
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
WITH collect(p) AS ps, percentileCont(p.dW_fro, $quantile) AS threshold
UNWIND ps AS p
WITH p.kind AS perturbation, threshold, p
RETURN perturbation, threshold AS large_dW_threshold, count(p) AS examples,
       sum(CASE WHEN p.dW_fro > threshold THEN 1 ELSE 0 END) AS large_dW,
       sum(CASE WHEN p.dW_fro > threshold AND NOT p.answer_changed THEN 1 ELSE 0 END) AS large_dW_answer_kept,
       sum(CASE WHEN p.dW_fro > threshold AND p.answer_changed THEN 1 ELSE 0 END) AS large_dW_answer_changed,
       sum(CASE WHEN p.answer_changed THEN 1 ELSE 0 END) AS answer_changed,
       avg(CASE WHEN p.answer_changed THEN 1.0 ELSE 0.0 END) AS flip_rate
ORDER BY large_dW_answer_kept DESC, perturbation
