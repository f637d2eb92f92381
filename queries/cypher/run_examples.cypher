// name: run_examples
// question: Which complete examples does a run have (to pick an example_id), filterable by question type and by the perturbations that flip their answer?
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: question_type string = null  -- only question types starting with this text (e.g. "what color")
// param: perturbation string = null  -- only examples whose answer flips under this perturbation kind
// param: changed_only bool = false  -- only examples whose answer flips under at least one perturbation
// param: limit int = 100 [1..]  -- at most this many examples, by example_id
// @include run_scope
// in example_id order straight from the uid index (uid = run id / example id; run ids hold no '/'),
// so the first $limit matches end the walk instead of sorting every example of the run
MATCH (e:Example)
WHERE e.uid STARTS WITH r.uid + '/' AND e.run_id = r.uid AND e.complete
  AND ($question_type IS NULL OR e.question_type STARTS WITH $question_type)
  AND (NOT $changed_only OR EXISTS { (e)-[:HAS_PERTURBATION]->(q:Perturbation) WHERE q.answer_changed })
  AND ($perturbation IS NULL OR EXISTS { (e)-[:HAS_PERTURBATION]->(q:Perturbation {kind: $perturbation}) WHERE q.answer_changed })
WITH e
ORDER BY e.uid
LIMIT $limit
OPTIONAL MATCH (e)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE p.answer_changed
WITH e, collect(p.kind) AS flipped
RETURN e.example_id AS example_id, e.question AS question, e.question_type AS question_type, e.answer AS answer,
       e.gt_answer AS gt_answer, flipped AS flipped_under
ORDER BY example_id
