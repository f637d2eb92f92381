// fragment: rows_examples
// Rows (r, s): the run's `Stats {of: 'examples'}` nodes as maps, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_examples
// (stcg/cypher/stats_examples.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'examples'})
  RETURN x {.*} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'examples'}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_examples
    RETURN s
  }
  RETURN s
}
