// stats: run
// One row for r: s.examples, r's complete examples when the statistics were written (how the writer
// tells whether they are current).
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
  WHERE e.complete
  RETURN count(e) AS examples
}
WITH r, {examples: examples} AS s
