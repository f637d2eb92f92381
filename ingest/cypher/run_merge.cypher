// run_merge: a Run made without the pipeline's checks (tests and benchmarks that write synthetic STCGs).
MERGE (r:Run {uid: $run_id})
ON CREATE SET r.started_at = datetime(), r.run_id = $run_id
SET r += $props, r.status = 'running', r.updated_at = datetime()
