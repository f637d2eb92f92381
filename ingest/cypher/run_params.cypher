// run_params: the engine parameters of a Run.
MATCH (r:Run {uid: $run_id}) SET r.params = $params, r.updated_at = datetime()
