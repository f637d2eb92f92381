// name: token_localisation
// question: Which token kinds (content / function / punct) or words form the most localised links: entropy, top-k mass and spatial spread of their region distributions? (spec Q1)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: group_by string = "kind" {kind|word}  -- group by token kind (content / function / punct) or by word
// param: min_count int = 5 [1..]  -- groups seen fewer times are left out
// param: limit int = 50 [1..]  -- at most this many groups, most localised (lowest entropy) first
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_TOKEN]->(t:Token)
WHERE e.complete
WITH CASE $group_by WHEN 'word' THEN t.word ELSE t.kind END AS grp, t
WITH grp, count(t) AS tokens, avg(t.entropy) AS mean_entropy_bits, avg(t.top_k_mass) AS mean_top_k_mass,
     avg(t.spread) AS mean_spread_patches, avg(t.visual_mass) AS mean_visual_mass
WHERE tokens >= $min_count
RETURN grp AS `group`, tokens, mean_entropy_bits, mean_top_k_mass, mean_spread_patches, mean_visual_mass
ORDER BY mean_entropy_bits ASC
LIMIT $limit
