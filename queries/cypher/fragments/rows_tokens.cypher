// fragment: rows_tokens
// Rows (r, s): the run's `Stats {of: 'tokens'}` nodes as maps, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_tokens
// (stcg/cypher/stats_tokens.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'tokens'})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'tokens'}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_tokens
    RETURN s
  }
  RETURN s
}
