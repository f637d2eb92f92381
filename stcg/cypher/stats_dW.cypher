// stats: dW
// One row per (perturbation kind, question type) of r's complete examples: s.n and s.flips (as in
// stats_perturbations) and its Perturbation.dW_fro values in ascending order: all non-null ones, those
// whose answer changed and those whose answer was kept (how many exceed a threshold: one bisection).
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
WITH r, p.kind AS kind, e.question_type AS question_type, p
ORDER BY p.dW_fro
WITH r, kind, question_type, count(p) AS n, sum(CASE WHEN p.answer_changed THEN 1 ELSE 0 END) AS flips,
     collect(p.dW_fro) AS dW_sorted,
     collect(CASE WHEN p.answer_changed THEN p.dW_fro END) AS dW_changed_sorted,
     collect(CASE WHEN NOT p.answer_changed THEN p.dW_fro END) AS dW_kept_sorted
WITH r, {kind: kind, question_type: question_type, n: n, flips: flips, dW_sorted: dW_sorted,
         dW_changed_sorted: dW_changed_sorted, dW_kept_sorted: dW_kept_sorted} AS s
