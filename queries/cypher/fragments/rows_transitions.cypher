// fragment: rows_transitions
// Rows (r, s): the run's `Stats {of: 'transitions'}` nodes as maps, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_transitions
// (stcg/cypher/stats_transitions.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'transitions'})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'transitions'}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_transitions
    RETURN s
  }
  RETURN s
}
