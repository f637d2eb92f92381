// stats: dW
// Every non-null Perturbation.dW_fro of r's complete examples in ascending order, cut into chunks of
// $chunk_width values, one row per chunk: s.values, with s.kind (index into s.kinds, the run's sorted
// perturbation kinds) and s.changed (1 answer changed, 0 kept, 2 unknown) of each value; s.first, its
// first value; s.before, how many values of each (kind, answer) code (kind * 3 + changed) come before
// the chunk. A last row past the end (no values) holds the totals in s.before. A quantile of any
// level reads two chunks, and how many values of each kind exceed a threshold reads one: the
// template's cost does not grow with the run.
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
  WHERE e.complete
  WITH DISTINCT p.kind AS kind
  ORDER BY kind
  RETURN collect(kind) AS kinds
}
CALL (r, kinds) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
  WHERE e.complete AND p.dW_fro IS NOT NULL AND p.kind IS NOT NULL  // (the writer always sets kind)
  WITH p.dW_fro AS x, [i IN range(0, size(kinds) - 1) WHERE kinds[i] = p.kind][0] AS k,
       CASE p.answer_changed WHEN true THEN 1 WHEN false THEN 0 ELSE 2 END AS ch
  ORDER BY x
  RETURN collect(x) AS xs, collect(k * 3 + ch) AS codes
}
WITH r, kinds, xs, codes, $chunk_width AS width
WITH r, kinds, xs, codes, width, range(0, (size(xs) + width - 1) / width) AS chunks  // the last: past the end
// per chunk, how many values of each code; before each chunk, the running sums (small lists only: the
// values stay in xs, sliced once per row below)
WITH r, kinds, xs, codes, width, chunks,
     [c IN chunks | [code IN range(0, 3 * size(kinds) - 1) | size([x IN codes[c * width..(c + 1) * width] WHERE x = code])]]
       AS counts
WITH r, kinds, xs, codes, width, chunks,
     reduce(acc = [[code IN range(0, 3 * size(kinds) - 1) | 0]], cnt IN counts |
       acc + [[i IN range(0, size(cnt) - 1) | acc[size(acc) - 1][i] + cnt[i]]]) AS before
UNWIND chunks AS c
WITH r, kinds, size(xs) AS n, width, c, before[c] AS before, xs[c * width..(c + 1) * width] AS values,
     codes[c * width..(c + 1) * width] AS chunk_codes
WITH r, {chunk: c, width: width, n_values: n, kinds: kinds, before: before,
         first: CASE WHEN size(values) > 0 THEN values[0] END,
         values: CASE WHEN size(values) > 0 THEN values END,
         kind: CASE WHEN size(values) > 0 THEN [x IN chunk_codes | x / 3] END,
         changed: CASE WHEN size(values) > 0 THEN [x IN chunk_codes | x % 3] END} AS s
