// name: claim_content_function
// question: Claim 4: do content tokens form stronger, more localised links than function tokens? Per example, content mean minus function mean of entropy, top-k mass and spread, averaged over examples with both kinds (point estimates; `stcg claims` adds 95% intervals and the verdict)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method string = "attention"  -- attribution method (runs ingested with --attributions): its token statistics on the Explanation node
// @include run_scope
// @include rows_content
WITH r, s
WHERE s.examples > 0
RETURN r.top_k AS top_k, s.examples AS examples,
       s.diff_entropy_bits AS diff_entropy_bits, s.diff_top_k_mass AS diff_top_k_mass,
       s.diff_spread_patches AS diff_spread_patches,
       s.content_entropy_bits AS content_entropy_bits, s.function_entropy_bits AS function_entropy_bits,
       s.content_top_k_mass AS content_top_k_mass, s.function_top_k_mass AS function_top_k_mass,
       s.content_spread_patches AS content_spread_patches, s.function_spread_patches AS function_spread_patches
