// name: method_grounding
// question: Does each explanation point at the evidence? Per attribution method (optionally per question type or per mask kind), over the examples with a ground-truth mask: relevance mass accuracy, relevance rank accuracy and pointing-game rate, their chance level K/P, and each minus chance, with counts. Runs ingested with --attributions on examples with masks (scenes; --masks or an hf: mask column) only. (spec section 7; `stcg metrics --by-method` adds bootstrap intervals)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: by_question_type bool = false  -- one row per method and question type
// param: by_mask_kind bool = false  -- one row per method and mask kind (single, union, all)
// param: min_examples int = 1 [1..]  -- groups with fewer examples are left out
// @include run_scope
// @include rows_grounding
// a metric an example cannot define (NaN: mass accuracy of an all-zero map) is left out of its mean,
// and so is that example's chance level from the metric's difference to chance
WITH s.method AS method, CASE WHEN $by_question_type THEN s.question_type END AS question_type,
     CASE WHEN $by_mask_kind THEN s.mask_kind END AS mask_kind, s
WITH method, question_type, mask_kind, sum(s.examples) AS examples, sum(s.sum_chance) AS sum_chance,
     sum(s.n_mass) AS mass_scored, sum(s.sum_mass) AS sum_mass, sum(s.chance_mass) AS chance_mass,
     sum(s.n_rank) AS n_rank, sum(s.sum_rank) AS sum_rank, sum(s.chance_rank) AS chance_rank,
     sum(s.n_pointing) AS n_pointing, sum(s.sum_pointing) AS sum_pointing, sum(s.chance_pointing) AS chance_pointing
WHERE examples >= $min_examples
WITH method, question_type, mask_kind, examples, mass_scored,
     CASE WHEN mass_scored > 0 THEN sum_mass / mass_scored END AS mass_accuracy,
     CASE WHEN n_rank > 0 THEN sum_rank / n_rank END AS rank_accuracy,
     CASE WHEN n_pointing > 0 THEN sum_pointing / n_pointing END AS pointing_game,
     sum_chance / examples AS chance,
     CASE WHEN mass_scored > 0 THEN (sum_mass - chance_mass) / mass_scored END AS mass_accuracy_over_chance,
     CASE WHEN n_rank > 0 THEN (sum_rank - chance_rank) / n_rank END AS rank_accuracy_over_chance,
     CASE WHEN n_pointing > 0 THEN (sum_pointing - chance_pointing) / n_pointing END AS pointing_game_over_chance
RETURN method, question_type, mask_kind, examples, mass_scored, mass_accuracy, rank_accuracy, pointing_game, chance,
       mass_accuracy_over_chance, rank_accuracy_over_chance, pointing_game_over_chance
ORDER BY question_type, mask_kind, mass_accuracy DESC, method
