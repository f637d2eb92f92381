// name: temporal_drift
// question: How does attention drift across answer steps (JS divergence between consecutive steps), by question type or answer type? (spec Q4)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: group_by string = "question_type" {question_type|answer_type}  -- group by question type or answer type
// param: include_eos bool = true  -- count the drift into the final </s> step
// @include run_scope
// @include rows_transitions
WITH CASE $group_by WHEN 'answer_type' THEN s.answer_type ELSE s.question_type END AS grp, s
WITH grp,
     sum(CASE WHEN $include_eos THEN s.examples_all ELSE s.examples_inner END) AS examples,
     sum(CASE WHEN $include_eos THEN s.transitions_all ELSE s.transitions_inner END) AS transitions,
     sum(CASE WHEN $include_eos THEN s.sum_js_all ELSE s.sum_js_inner END) AS sum_js,
     sum(CASE WHEN $include_eos THEN s.n_js_all ELSE s.n_js_inner END) AS n_js,
     max(CASE WHEN $include_eos THEN s.max_js_all ELSE s.max_js_inner END) AS max_js_bits,
     sum(CASE WHEN $include_eos THEN s.sum_visual_mass_all ELSE s.sum_visual_mass_inner END) AS sum_visual_mass,
     sum(CASE WHEN $include_eos THEN s.n_visual_mass_all ELSE s.n_visual_mass_inner END) AS n_visual_mass
WHERE transitions > 0
RETURN grp AS `group`, examples, transitions, CASE WHEN n_js > 0 THEN sum_js / n_js END AS mean_js_bits, max_js_bits,
       CASE WHEN n_visual_mass > 0 THEN sum_visual_mass / n_visual_mass END AS mean_step_visual_mass
ORDER BY mean_js_bits DESC, `group`
