// name: claim_content_function
// question: Claim 4: do content tokens form stronger, more localised links than function tokens? Per example, content mean minus function mean of entropy, top-k mass and spread, averaged over examples with both kinds (point estimates; `stcg claims` adds 95% intervals and the verdict)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method string = "attention"  -- attribution method (runs ingested with --attributions): its token statistics on the Explanation node
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
OPTIONAL MATCH (e)-[:HAS_EXPLANATION]->(x:Explanation {method: $method})
WHERE $method <> 'attention'
MATCH (e)-[:HAS_TOKEN]->(t:Token)
WITH r, e, t.kind AS kind,
     CASE WHEN $method = 'attention' THEN t.entropy ELSE x.token_entropy[t.index] END AS entropy,
     CASE WHEN $method = 'attention' THEN t.top_k_mass ELSE x.token_top_k_mass[t.index] END AS top_k_mass,
     CASE WHEN $method = 'attention' THEN t.spread ELSE x.token_spread[t.index] END AS spread
WHERE entropy IS NOT NULL
WITH r, e,
     avg(CASE WHEN kind = 'content' THEN entropy END) AS ce, avg(CASE WHEN kind = 'function' THEN entropy END) AS fe,
     avg(CASE WHEN kind = 'content' THEN top_k_mass END) AS cm,
     avg(CASE WHEN kind = 'function' THEN top_k_mass END) AS fm,
     avg(CASE WHEN kind = 'content' THEN spread END) AS cs, avg(CASE WHEN kind = 'function' THEN spread END) AS fs
WHERE ce IS NOT NULL AND fe IS NOT NULL
RETURN r.top_k AS top_k, count(e) AS examples,
       avg(ce - fe) AS diff_entropy_bits, avg(cm - fm) AS diff_top_k_mass, avg(cs - fs) AS diff_spread_patches,
       avg(ce) AS content_entropy_bits, avg(fe) AS function_entropy_bits,
       avg(cm) AS content_top_k_mass, avg(fm) AS function_top_k_mass,
       avg(cs) AS content_spread_patches, avg(fs) AS function_spread_patches
