// fragment: rows_regions
// Rows (r, s), one per (perturbation kind, question type, region row, col): the run's
// `Stats {of: 'regions'}` nodes unrolled from their parallel lists, or, when it has none (a run not
// finished yet, or being written to), the same maps computed from its graph by stats_regions
// (stcg/cypher/stats_regions.cypher, the statement that wrote them). Needs r bound.
CALL (r) {
  MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'regions'})
  UNWIND range(0, size(x.row) - 1) AS i
  RETURN {kind: x.kind, question_type: x.question_type, row: x.row[i], col: x.col[i], abs_dW: x.abs_dW[i],
          examples: x.examples[i]} AS s
  UNION ALL
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'regions'}) }
  CALL (r) {  // its own subquery: it runs only for a run that passed the check above
    // @include stats_regions
    RETURN s
  }
  RETURN s
}
