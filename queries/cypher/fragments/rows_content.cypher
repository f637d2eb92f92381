// fragment: rows_content
// Rows (r, s): the run's `Stats {of: 'content', method: $method}` node as a map, or, when it has none
// (a run not finished yet, being written to, or without that method), the same map computed from its
// graph by stats_content (stcg/cypher/stats_content.cypher, the statement that wrote it). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'content', method: $method})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'content', method: $method}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_content
    RETURN s
  }
  RETURN s
}
