// name: example_links
// question: One example's links as a table: every token -> region and step -> region link (weight, rank) and every token's dW under each perturbation; for another attribution method (runs ingested with --attributions), that method's token and step links.
// param: example_id string  -- the example's id (e.g. easy-vqa:test:0)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method string = "attention"  -- attribution method whose links to list (dW links exist for attention only)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example {example_id: $example_id})
WHERE e.complete
CALL (e) {
  MATCH (e)-[:HAS_TOKEN]->(t:Token)-[a:ATTENDS|ATTRIBUTES]->(g:Region)
  WHERE coalesce(a.method, 'attention') = $method
  RETURN 'token' AS source, t.index AS source_index, t.text AS source_text, null AS perturbation,
         g.index AS region, g.row AS row, g.col AS col, a.weight AS value, a.rank AS rank
  UNION ALL
  MATCH (e)-[:HAS_STEP]->(s:Timestep)-[a:ATTENDS|ATTRIBUTES]->(g:Region)
  WHERE coalesce(a.method, 'attention') = $method
  RETURN 'step' AS source, s.step AS source_index, s.token AS source_text, null AS perturbation,
         g.index AS region, g.row AS row, g.col AS col, a.weight AS value, a.rank AS rank
  UNION ALL
  MATCH (e)-[:HAS_TOKEN]->(t:Token)-[d:DW]->(g:Region)
  WHERE $method = 'attention'
  RETURN 'dW' AS source, t.index AS source_index, t.text AS source_text, d.perturbation AS perturbation,
         g.index AS region, g.row AS row, g.col AS col, d.dW AS value, d.rank AS rank
}
RETURN source, source_index, source_text, perturbation, region, row, col, value, rank
ORDER BY source, perturbation, source_index, rank
