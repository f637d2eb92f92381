// stats: grounding
// One row per (method, question type, mask kind) of r's complete examples with a ground-truth mask and
// an Explanation holding ground-truth scores (runs ingested with --attributions on examples with masks):
// s.examples, the sum of chance levels, and per metric (mass accuracy, rank accuracy, pointing game)
// its defined count, its sum, and the sum of the chance levels of the examples defining it (a NaN
// metric, the mass accuracy of an all-zero map, is left out of its own sums only).
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_EXPLANATION]->(x:Explanation)
WHERE e.complete AND e.mask_kind IS NOT NULL AND x.chance IS NOT NULL
WITH r, x.method AS method, e.question_type AS question_type, e.mask_kind AS mask_kind, x.chance AS chance,
     CASE WHEN NOT isNaN(x.mass_accuracy) THEN x.mass_accuracy END AS mass,
     CASE WHEN NOT isNaN(x.rank_accuracy) THEN x.rank_accuracy END AS rank,
     CASE WHEN NOT isNaN(x.pointing_game) THEN x.pointing_game END AS pointing
WITH r, method, question_type, mask_kind, count(*) AS examples, sum(chance) AS sum_chance,
     count(mass) AS n_mass, sum(mass) AS sum_mass, sum(CASE WHEN mass IS NOT NULL THEN chance END) AS chance_mass,
     count(rank) AS n_rank, sum(rank) AS sum_rank, sum(CASE WHEN rank IS NOT NULL THEN chance END) AS chance_rank,
     count(pointing) AS n_pointing, sum(pointing) AS sum_pointing,
     sum(CASE WHEN pointing IS NOT NULL THEN chance END) AS chance_pointing
WITH r, {method: method, question_type: question_type, mask_kind: mask_kind, examples: examples,
         sum_chance: sum_chance, n_mass: n_mass, sum_mass: sum_mass, chance_mass: chance_mass,
         n_rank: n_rank, sum_rank: sum_rank, chance_rank: chance_rank,
         n_pointing: n_pointing, sum_pointing: sum_pointing, chance_pointing: chance_pointing} AS s
