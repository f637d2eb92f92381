// run_identity: the identity a Run holds.
MATCH (r:Run {uid: $run_id}) RETURN r.identity AS identity
