// fragment: rows_causal
// Rows (r, s): the run's `Stats {of: 'causal', method: $method}` node as a map, or, when it has none
// (a run not finished yet, being written to, or without that method), the same map computed from its
// graph by stats_causal (stcg/cypher/stats_causal.cypher, the statement that wrote it). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'causal', method: $method})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'causal', method: $method}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_causal
    RETURN s
  }
  RETURN s
}
