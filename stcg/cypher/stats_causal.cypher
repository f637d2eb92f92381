// stats: causal
// One row for r and $method: claim 5's causal faithfulness, the Pearson and Spearman (average ranks
// for ties) correlation of |dW|_F under the method with |dp| across (example, perturbation) pairs,
// with the counts of examples and pairs.
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
  WHERE e.complete
  OPTIONAL MATCH (e)-[:HAS_EXPLANATION]->(:Explanation {method: $method})-[u:UNDER]->(p)
  WITH e, p, CASE WHEN $method = 'attention' THEN p.dW_fro ELSE u.dW_fro END AS dW_fro
  WHERE dW_fro IS NOT NULL
  WITH count(DISTINCT e) AS examples, collect({x: dW_fro, y: p.abs_dp}) AS pairs
  WITH examples, pairs, size(pairs) AS n,
       CASE WHEN size(pairs) > 0 THEN reduce(s = 0.0, q IN pairs | s + q.x) / size(pairs) END AS mx,
       CASE WHEN size(pairs) > 0 THEN reduce(s = 0.0, q IN pairs | s + q.y) / size(pairs) END AS my
  WITH examples, pairs, n,
       reduce(s = 0.0, q IN pairs | s + (q.x - mx) * (q.y - my)) AS cxy,
       reduce(s = 0.0, q IN pairs | s + (q.x - mx) * (q.x - mx)) AS cxx,
       reduce(s = 0.0, q IN pairs | s + (q.y - my) * (q.y - my)) AS cyy
  // Spearman: Pearson of the average ranks (ties share their mean rank), ranks by sorting
  CALL (pairs, n) {
    UNWIND pairs AS q
    WITH q ORDER BY q.x
    WITH collect(q) AS byx
    UNWIND range(0, size(byx) - 1) AS i
    WITH byx[i].x AS x, byx[i].y AS y, i
    WITH x, min(i) AS first, count(*) AS ties, collect(y) AS ys
    UNWIND ys AS y
    WITH first + (ties + 1) / 2.0 AS rx, y ORDER BY y
    WITH collect({rx: rx, y: y}) AS byy
    UNWIND range(0, size(byy) - 1) AS j
    WITH byy[j].y AS y, byy[j].rx AS rx, j
    WITH y, min(j) AS first, count(*) AS ties, collect(rx) AS rxs
    UNWIND rxs AS rx
    WITH rx, first + (ties + 1) / 2.0 AS ry
    WITH count(*) AS m, sum(rx * ry) AS sxy, sum(rx * rx) AS sxx, sum(ry * ry) AS syy, (count(*) + 1) / 2.0 AS mean
    RETURN CASE WHEN m >= 3 AND sxx - m * mean * mean > 0 AND syy - m * mean * mean > 0
                THEN (sxy - m * mean * mean) / sqrt((sxx - m * mean * mean) * (syy - m * mean * mean)) END AS spearman
  }
  RETURN examples, n AS pairs, CASE WHEN n >= 3 AND cxx > 0 AND cyy > 0 THEN cxy / sqrt(cxx * cyy) END AS pearson,
         spearman
}
WITH r, {method: $method, examples: examples, pairs: pairs, pearson: pearson, spearman: spearman} AS s
