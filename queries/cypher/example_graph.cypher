// name: example_graph
// question: One example's STCG as paths for Neo4j Browser, one readable view at a time: structural (question tokens -> their strongest image regions), temporal (answer steps chained by NEXT -> their regions and question tokens), counterfactual (perturbations -> the regions whose attention they moved most); all (the three together). (spec Q8)
// param: example_id string = null  -- the example's id (list them with run_examples); default: the run's first complete example
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: view string = "structural" {structural|temporal|counterfactual|all}  -- which part of the graph to draw
// param: method string = "attention"  -- attribution method whose token and step links to draw (runs ingested with --attributions; another method's structural view also shows its Explanation ranking regions)
// param: max_rank int = 3 [1..]  -- links of rank <= this are shown (rank 1 = strongest; ingest keeps --top-k, default 5)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete AND ($example_id IS NULL OR e.example_id = $example_id)
WITH e ORDER BY e.example_id LIMIT 1
CALL (e) {
  MATCH p = (e)-[:HAS_TOKEN]->(:Token)-[a:ATTENDS|ATTRIBUTES]->(:Region)
  WHERE $view IN ['structural', 'all'] AND a.rank <= $max_rank AND coalesce(a.method, 'attention') = $method
  RETURN p
  UNION
  MATCH p = (e)-[:HAS_EXPLANATION]->(x:Explanation)-[k:RANKS]->(:Region)
  WHERE $view IN ['structural', 'all'] AND k.rank <= $max_rank AND $method <> 'attention' AND x.method = $method
  RETURN p
  UNION
  MATCH p = (e)-[:HAS_STEP]->(:Timestep)-[a:ATTENDS|ATTRIBUTES]->(:Region)
  WHERE $view IN ['temporal', 'all'] AND a.rank <= $max_rank AND coalesce(a.method, 'attention') = $method
  RETURN p
  UNION
  MATCH p = (e)-[:HAS_STEP]->(:Timestep)-[:NEXT]->(:Timestep)
  WHERE $view IN ['temporal', 'all']
  RETURN p
  UNION
  MATCH p = (e)-[:HAS_STEP]->(s:Timestep)-[a:ATTENDS_TOKEN]->(:Token)
  WHERE $view IN ['temporal', 'all'] AND COUNT { (s)-[b:ATTENDS_TOKEN]->() WHERE b.weight > a.weight } < $max_rank
  RETURN p
  UNION
  MATCH p = (e)-[:HAS_PERTURBATION]->(:Perturbation)-[m:MOVES]->(:Region)
  WHERE $view IN ['counterfactual', 'all'] AND m.rank <= $max_rank
  RETURN p
}
RETURN p
