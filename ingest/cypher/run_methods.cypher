// run_methods: the attribution methods of a run's complete examples.
MATCH (:Run {uid: $run_id})-[:HAS_EXAMPLE]->(e:Example)-[:HAS_EXPLANATION]->(x:Explanation)
WHERE e.complete
RETURN DISTINCT x.method AS method ORDER BY method
