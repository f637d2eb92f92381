// lease_take: a new Writer lease on a Run.
MATCH (r:Run {uid: $run_id})
CREATE (r)-[:HAS_WRITER]->(:Writer {uid: $uid, run_id: $run_id, host: $host, pid: $pid, shard: $shard,
                                    started_at: datetime(), heartbeat: datetime()})
