// stats: run
// One row for r: s.examples (r's complete examples when the statistics were written) and
// s.dW_sorted, every non-null Perturbation.dW_fro of them in ascending order (percentileCont of any
// quantile reads two of its entries).
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
  WHERE e.complete
  RETURN count(e) AS examples
}
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
  WHERE e.complete AND p.dW_fro IS NOT NULL
  WITH p.dW_fro AS x
  ORDER BY x
  RETURN collect(x) AS dW_sorted
}
WITH r, {examples: examples, dW_sorted: dW_sorted} AS s
