// run_lock: take the Run's write lock (finishing workers take turns); its status.
MATCH (r:Run {uid: $run_id}) SET r.updated_at = datetime() RETURN r.status AS status
