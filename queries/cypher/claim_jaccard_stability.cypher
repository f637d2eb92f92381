// name: claim_jaccard_stability
// question: Claim 6: how does this run's Jaccard stability (top-10% regions, clean vs gaussian_noise, mean over examples) compare with the study's 0.23? Point estimate; `stcg claims` / `stcg metrics` add the 95% interval
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete AND e.stability_jaccard IS NOT NULL
RETURN count(e) AS examples, avg(e.stability_jaccard) AS jaccard_stability, 0.23 AS study
