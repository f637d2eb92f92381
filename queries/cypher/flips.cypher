// name: flips
// question: Which examples flip their answer under a given perturbation, with their dW and dp? (spec Q5)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: perturbation string = "color_shift"  -- perturbation kind
// param: limit int = 100 [1..]  -- at most this many examples, largest |dW|_F first
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation {kind: $perturbation})
WHERE e.complete AND p.answer_changed
RETURN e.example_id AS example_id, e.question AS question, e.question_type AS question_type, e.answer AS answer,
       p.answer AS perturbed_answer, p.dW_fro AS dW_fro, p.dp AS dp, e.p_clean AS p_clean, p.p_perturbed AS p_perturbed
ORDER BY dW_fro DESC, example_id
LIMIT $limit
