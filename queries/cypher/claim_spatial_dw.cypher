// name: claim_spatial_dw
// question: Claim 1: do the spatial perturbations (patch_shuffle, peripheral_mask) produce the largest mean |dW|_F? Each perturbation's mean |dW|_F and rank (point estimates; `stcg claims` adds 95% intervals and the verdict)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
// @include rows_perturbations
WITH s.kind AS perturbation, sum(s.n) AS examples, sum(s.n_dW) AS n_dW, sum(s.sum_dW) AS sum_dW
WITH perturbation, examples, CASE WHEN n_dW > 0 THEN sum_dW / n_dW END AS mean_dW_fro
ORDER BY mean_dW_fro DESC, perturbation
WITH collect({perturbation: perturbation, examples: examples, mean_dW_fro: mean_dW_fro}) AS rows
UNWIND range(0, size(rows) - 1) AS i
RETURN i + 1 AS rank, rows[i].perturbation AS perturbation,
       rows[i].perturbation IN ['patch_shuffle', 'peripheral_mask'] AS spatial,
       rows[i].examples AS examples, rows[i].mean_dW_fro AS mean_dW_fro
ORDER BY rank
