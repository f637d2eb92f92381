// stats: content
// One row for r and $method: claim 4's per-example content-minus-function differences of token
// entropy, top-k mass and spread under the method, averaged over the examples with both kinds.
CALL (r) {
  MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
  WHERE e.complete
  OPTIONAL MATCH (e)-[:HAS_EXPLANATION]->(x:Explanation {method: $method})
  WHERE $method <> 'attention'
  MATCH (e)-[:HAS_TOKEN]->(t:Token)
  WITH e, t.kind AS kind,
       CASE WHEN $method = 'attention' THEN t.entropy ELSE x.token_entropy[t.index] END AS entropy,
       CASE WHEN $method = 'attention' THEN t.top_k_mass ELSE x.token_top_k_mass[t.index] END AS top_k_mass,
       CASE WHEN $method = 'attention' THEN t.spread ELSE x.token_spread[t.index] END AS spread
  WHERE entropy IS NOT NULL
  WITH e,
       avg(CASE WHEN kind = 'content' THEN entropy END) AS ce, avg(CASE WHEN kind = 'function' THEN entropy END) AS fe,
       avg(CASE WHEN kind = 'content' THEN top_k_mass END) AS cm,
       avg(CASE WHEN kind = 'function' THEN top_k_mass END) AS fm,
       avg(CASE WHEN kind = 'content' THEN spread END) AS cs, avg(CASE WHEN kind = 'function' THEN spread END) AS fs
  WHERE ce IS NOT NULL AND fe IS NOT NULL
  RETURN count(e) AS examples,
         avg(ce - fe) AS diff_entropy_bits, avg(cm - fm) AS diff_top_k_mass, avg(cs - fs) AS diff_spread_patches,
         avg(ce) AS content_entropy_bits, avg(fe) AS function_entropy_bits,
         avg(cm) AS content_top_k_mass, avg(fm) AS function_top_k_mass,
         avg(cs) AS content_spread_patches, avg(fs) AS function_spread_patches
}
WITH r, {method: $method, examples: examples, diff_entropy_bits: diff_entropy_bits, diff_top_k_mass: diff_top_k_mass,
         diff_spread_patches: diff_spread_patches, content_entropy_bits: content_entropy_bits,
         function_entropy_bits: function_entropy_bits, content_top_k_mass: content_top_k_mass,
         function_top_k_mass: function_top_k_mass, content_spread_patches: content_spread_patches,
         function_spread_patches: function_spread_patches} AS s
