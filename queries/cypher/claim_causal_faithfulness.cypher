// name: claim_causal_faithfulness
// question: Claim 5: how does this run's causal faithfulness (Pearson and Spearman correlation of |dW|_F with |dp| across (example, perturbation) pairs) compare with the study's -0.31? Point estimates; `stcg claims` / `stcg metrics` add 95% intervals
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method string = "attention"  -- attribution method (runs ingested with --attributions): |dW|_F under it (UNDER.dW_fro)
// @include run_scope
// @include rows_causal
RETURN s.examples AS examples, s.pairs AS pairs, s.pearson AS pearson, s.spearman AS spearman, -0.31 AS study
