// run_claim: make the Run if it is new; its identity either way.
MERGE (r:Run {uid: $run_id})
ON CREATE SET r.run_id = $run_id, r.name = $run_id, r.name_key = $key, r.identity = $identity,
              r.store = $store, r.started_at = datetime()
RETURN r.identity AS identity
