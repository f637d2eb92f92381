// fragment: rows_dW
// Rows (r, s): the run's `Stats {of: 'dW'}` nodes as maps, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_dW
// (stcg/cypher/stats_dW.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'dW'})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'dW'}) }
  // @include stats_dW
  RETURN s
}
