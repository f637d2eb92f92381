// drop_stats: delete a Run's Stats nodes.
MATCH (:Run {uid: $run_id})-[:HAS_STATS]->(x:Stats) DETACH DELETE x
