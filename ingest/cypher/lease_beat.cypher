// lease_beat: a lease's heartbeat. One that finds its lease gone (judged dead while the database was out
// of reach for LEASE_S) takes it again, and undoes what a finalise may have done meanwhile: the run is
// 'running', with no statistics.
MATCH (r:Run {uid: $run_id})
MERGE (r)-[:HAS_WRITER]->(w:Writer {uid: $uid})
ON CREATE SET w.run_id = $run_id, w.host = $host, w.pid = $pid, w.shard = $shard, w.started_at = datetime(),
              w.retaken = true
SET w.heartbeat = datetime()
WITH r, w
WHERE w.retaken
REMOVE w.retaken
SET r.status = 'running', r.updated_at = datetime()
WITH r
OPTIONAL MATCH (r)-[:HAS_STATS]->(x:Stats)
DETACH DELETE x
