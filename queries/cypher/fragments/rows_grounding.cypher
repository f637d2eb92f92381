// fragment: rows_grounding
// Rows (r, s): the run's `Stats {of: 'grounding'}` nodes as maps, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_grounding
// (stcg/cypher/stats_grounding.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'grounding'})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'grounding'}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_grounding
    RETURN s
  }
  RETURN s
}
