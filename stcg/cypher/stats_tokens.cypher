// stats: tokens
// One row per (token kind, word) of r's complete examples: s.tokens and the sum and non-null count
// of the tokens' entropy, top_k_mass, spread and visual_mass.
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_TOKEN]->(t:Token)
WHERE e.complete
WITH r, t.kind AS kind, t.word AS word, count(t) AS tokens,
     sum(t.entropy) AS sum_entropy, count(t.entropy) AS n_entropy,
     sum(t.top_k_mass) AS sum_top_k_mass, count(t.top_k_mass) AS n_top_k_mass,
     sum(t.spread) AS sum_spread, count(t.spread) AS n_spread,
     sum(t.visual_mass) AS sum_visual_mass, count(t.visual_mass) AS n_visual_mass
WITH r, {kind: kind, word: word, tokens: tokens, sum_entropy: sum_entropy, n_entropy: n_entropy,
         sum_top_k_mass: sum_top_k_mass, n_top_k_mass: n_top_k_mass, sum_spread: sum_spread, n_spread: n_spread,
         sum_visual_mass: sum_visual_mass, n_visual_mass: n_visual_mass} AS s
