// name: claim_jaccard_stability
// question: Claim 6: how does this run's Jaccard stability (top-10% regions, clean vs gaussian_noise, mean over examples) compare with the study's 0.23? Point estimate; `stcg claims` / `stcg metrics` add the 95% interval
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method string = "attention"  -- attribution method (runs ingested with --attributions): its top-10% regions (Explanation.stability_jaccard)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
OPTIONAL MATCH (e)-[:HAS_EXPLANATION]->(x:Explanation {method: $method})
WITH e, CASE WHEN $method = 'attention' THEN e.stability_jaccard ELSE x.stability_jaccard END AS jaccard
WHERE jaccard IS NOT NULL
RETURN count(e) AS examples, avg(jaccard) AS jaccard_stability, 0.23 AS study
