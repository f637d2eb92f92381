// name: example_graph
// question: The full STCG of one example, as paths for Neo4j Browser: tokens -> top-k regions, steps -> regions and tokens, step chain, perturbations. (spec Q8)
// param: example_id string = null  -- the example's id (e.g. easy-vqa:test:0); default: the first complete example of the run
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: max_rank int = 3  -- region links of rank <= this are shown
MATCH (r:Run)
WHERE CASE WHEN $run_id IS NULL THEN r.status = 'complete' ELSE r.uid = $run_id OR r.name = $run_id END
WITH r ORDER BY r.finished_at DESC LIMIT 1
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete AND ($example_id IS NULL OR e.example_id = $example_id)
WITH e ORDER BY e.example_id LIMIT 1
CALL (e) {
  MATCH p = (e)-[:HAS_TOKEN]->(:Token)-[a:ATTENDS]->(:Region) WHERE a.rank <= $max_rank RETURN p
  UNION
  MATCH p = (e)-[:HAS_STEP]->(:Timestep)-[a:ATTENDS]->(:Region) WHERE a.rank <= $max_rank RETURN p
  UNION
  MATCH p = (e)-[:HAS_STEP]->(:Timestep)-[:NEXT]->(:Timestep) RETURN p
  UNION
  MATCH p = (e)-[:HAS_PERTURBATION]->(:Perturbation)-[m:MOVES]->(:Region) WHERE m.rank <= $max_rank RETURN p
}
RETURN p
