// name: run_examples
// question: Which complete examples does a run have (to pick an example_id), filterable by question type and by the perturbations that flip their answer?
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: question_type string = null  -- only question types starting with this text (e.g. "what color")
// param: perturbation string = null  -- only examples whose answer flips under this perturbation kind
// param: changed_only bool = false  -- only examples whose answer flips under at least one perturbation
// param: limit int = 100 [1..]  -- at most this many examples, by example_id
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete AND ($question_type IS NULL OR e.question_type STARTS WITH $question_type)
OPTIONAL MATCH (e)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE p.answer_changed
WITH e, collect(p.kind) AS flipped
WHERE (NOT $changed_only OR size(flipped) > 0) AND ($perturbation IS NULL OR $perturbation IN flipped)
RETURN e.example_id AS example_id, e.question AS question, e.question_type AS question_type, e.answer AS answer,
       e.gt_answer AS gt_answer, flipped AS flipped_under
ORDER BY example_id
LIMIT $limit
