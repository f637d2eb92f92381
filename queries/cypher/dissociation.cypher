// name: dissociation
// question: Which perturbations dissociate dW from the answer (large |dW|_F but the answer unchanged), and which change the answer? (spec Q2)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: quantile float = 0.75 [0..1]  -- "large" means |dW|_F above this quantile of all (example, perturbation) pairs of the run
// @include run_scope
CALL (r) {
  // from the run's statistics (docs/schema.md): the quantile from two chunks of the sorted |dW|_F,
  // the counts above it from the totals minus the values up to it (one chunk, and the counts before it)
  MATCH (r)-[:HAS_STATS]->(t:Stats {of: 'dW'})
  WITH r, t.n_values AS n, t.width AS width, t.kinds AS kinds
  LIMIT 1
  WITH r, n, width, kinds, $quantile * (n - 1) AS pos
  WITH r, n, width, kinds, pos, toInteger(floor(pos)) AS lo, toInteger(ceil(pos)) AS hi
  OPTIONAL MATCH (r)-[:HAS_STATS]->(a:Stats {of: 'dW', chunk: lo / width})
  OPTIONAL MATCH (r)-[:HAS_STATS]->(b:Stats {of: 'dW', chunk: hi / width})
  WITH r, width, kinds, pos, lo, hi, n, a.values[lo % width] AS x_lo, b.values[hi % width] AS x_hi
  // percentileCont($quantile), as Neo4j computes it
  WITH r, width, kinds, CASE WHEN n = 0 THEN null WHEN $quantile = 1.0 OR n = 1 THEN x_hi WHEN lo = hi THEN x_lo
                             ELSE x_lo * (hi - pos) + x_hi * (pos - lo) END AS threshold
  MATCH (r)-[:HAS_STATS]->(z:Stats {of: 'dW'})
  WHERE z.first IS NULL  // the row past the end: the totals
  OPTIONAL MATCH (r)-[:HAS_STATS]->(c:Stats {of: 'dW'})
  WHERE c.first <= threshold
  WITH r, kinds, threshold, z.before AS total, max(c.chunk) AS last
  OPTIONAL MATCH (r)-[:HAS_STATS]->(c:Stats {of: 'dW', chunk: last})
  WITH r, kinds, threshold, total, coalesce(c.before, [x IN total | 0]) AS before, coalesce(c.values, []) AS vs,
       coalesce(c.kind, []) AS ks, coalesce(c.changed, []) AS cs
  WITH r, kinds, threshold, total,
       [code IN range(0, size(total) - 1) | total[code] - before[code]
         - size([j IN range(0, size(vs) - 1) WHERE vs[j] <= threshold AND ks[j] * 3 + cs[j] = code])] AS above
  UNWIND range(0, size(kinds) - 1) AS k
  CALL (r, kinds, k) {  // the kind's perturbations and flips, from the perturbations statistics
    MATCH (r)-[:HAS_STATS]->(x:Stats {of: 'perturbations', kind: kinds[k]})
    RETURN sum(x.n) AS examples, sum(x.flips) AS answer_changed
  }
  RETURN kinds[k] AS perturbation, threshold, examples, answer_changed,
         above[3 * k] + above[3 * k + 1] + above[3 * k + 2] AS large_dW,
         above[3 * k + 1] AS large_dW_answer_changed, above[3 * k] AS large_dW_answer_kept
  UNION ALL
  // a run without statistics: the same from its graph
  WITH r
  WHERE NOT EXISTS { (r)-[:HAS_STATS]->(:Stats {of: 'dW'}) }
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
  WHERE e.complete
  WITH collect(p) AS ps, percentileCont(p.dW_fro, $quantile) AS threshold
  UNWIND ps AS p
  RETURN p.kind AS perturbation, threshold, count(p) AS examples,
         sum(CASE WHEN p.answer_changed THEN 1 ELSE 0 END) AS answer_changed,
         sum(CASE WHEN p.dW_fro > threshold THEN 1 ELSE 0 END) AS large_dW,
         sum(CASE WHEN p.dW_fro > threshold AND p.answer_changed THEN 1 ELSE 0 END) AS large_dW_answer_changed,
         sum(CASE WHEN p.dW_fro > threshold AND NOT p.answer_changed THEN 1 ELSE 0 END) AS large_dW_answer_kept
}
RETURN perturbation, threshold AS large_dW_threshold, examples, large_dW, large_dW_answer_kept, large_dW_answer_changed,
       answer_changed, toFloat(answer_changed) / examples AS flip_rate
ORDER BY large_dW_answer_kept DESC, perturbation
