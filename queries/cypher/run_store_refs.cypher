// name: run_store_refs
// internal: true
// question: Where every complete example of a run keeps its dense arrays (file store shard and key), with its question type.
// param: run_id string  -- run id or name
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
RETURN e.example_id AS example_id, e.question_type AS question_type, e.store_shard AS shard, e.store_key AS key
ORDER BY e.example_id
