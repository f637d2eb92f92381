// stats_lock: take the Run's write lock, and say whether its statistics are current: written over as many
// complete examples as the run has now.
MATCH (r:Run {uid: $run_id})
SET r.updated_at = datetime()
WITH r
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
  WHERE e.complete
  RETURN count(e) AS complete
}
RETURN r.status AS status, complete, [(r)-[:HAS_STATS]->(x:Stats {of: 'run'}) | x.examples][0] AS stats_examples
