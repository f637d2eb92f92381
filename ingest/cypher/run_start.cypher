// run_start: a Run starts (or resumes) running; its file store is kept once it has examples.
MATCH (r:Run {uid: $run_id})
SET r += $props, r.identity = $identity, r.status = 'running', r.updated_at = datetime(),
    r.store = CASE WHEN r.store IS NULL OR NOT EXISTS { (r)-[:HAS_EXAMPLE]->() } THEN $store ELSE r.store END
RETURN r.store AS store
