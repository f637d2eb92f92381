// leases: the Writer leases of a Run; age: seconds since the heartbeat, by the server's clock.
MATCH (:Run {uid: $run_id})-[:HAS_WRITER]->(w:Writer)
RETURN w.uid AS uid, w.host AS host, w.pid AS pid, w.shard AS shard,
       (datetime().epochMillis - w.heartbeat.epochMillis) / 1000.0 AS age
ORDER BY w.started_at
