// name: example_store
// internal: true
// question: Where one complete example keeps its dense arrays (the run's file store root, shard, key) and its image.
// param: example_id string  -- the example's id (e.g. easy-vqa:test:0)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example {example_id: $example_id})
WHERE e.complete
RETURN r.uid AS run_id, r.store AS store, e.store_shard AS shard, e.store_key AS key, e.image_path AS image_path
