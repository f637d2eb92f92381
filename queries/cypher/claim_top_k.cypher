// name: claim_top_k
// internal: true
// question: The region links kept per token (top-k) of a run, what Token.top_k_mass sums: Run.top_k as recorded, and the ATTENDS links of one of its tokens (for runs that did not record it).
// param: run_id string  -- run id or name
// @include run_scope
OPTIONAL MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_TOKEN]->(t:Token)
WHERE e.complete
WITH r, t LIMIT 1
RETURN r.top_k AS recorded_top_k, CASE WHEN t IS NULL THEN null ELSE COUNT { (t)-[:ATTENDS]->(:Region) } END AS links_per_token
