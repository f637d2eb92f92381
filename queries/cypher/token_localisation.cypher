// name: token_localisation
// question: Which token kinds (content / function / punct) or words form the most localised links: entropy, top-k mass and spatial spread of their region distributions? (spec Q1)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: group_by string = "kind" {kind|word}  -- group by token kind (content / function / punct) or by word
// param: min_count int = 5 [1..]  -- groups seen fewer times are left out
// param: limit int = 50 [1..]  -- at most this many groups, most localised (lowest entropy) first
// @include run_scope
// @include rows_tokens
WITH CASE $group_by WHEN 'word' THEN s.word ELSE s.kind END AS grp, s
WITH grp, sum(s.tokens) AS tokens, sum(s.sum_entropy) AS sum_entropy, sum(s.n_entropy) AS n_entropy,
     sum(s.sum_top_k_mass) AS sum_top_k_mass, sum(s.n_top_k_mass) AS n_top_k_mass, sum(s.sum_spread) AS sum_spread,
     sum(s.n_spread) AS n_spread, sum(s.sum_visual_mass) AS sum_visual_mass, sum(s.n_visual_mass) AS n_visual_mass
WHERE tokens >= $min_count
RETURN grp AS `group`, tokens, CASE WHEN n_entropy > 0 THEN sum_entropy / n_entropy END AS mean_entropy_bits,
       CASE WHEN n_top_k_mass > 0 THEN sum_top_k_mass / n_top_k_mass END AS mean_top_k_mass,
       CASE WHEN n_spread > 0 THEN sum_spread / n_spread END AS mean_spread_patches,
       CASE WHEN n_visual_mass > 0 THEN sum_visual_mass / n_visual_mass END AS mean_visual_mass
ORDER BY mean_entropy_bits ASC, `group`
LIMIT $limit
