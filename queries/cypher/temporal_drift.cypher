// name: temporal_drift
// question: How does attention drift across answer steps (JS divergence between consecutive steps), by question type or answer type? (spec Q4)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: group_by string = "question_type" {question_type|answer_type}  -- group by question type or answer type
// param: include_eos bool = true  -- count the drift into the final </s> step
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_STEP]->(s1:Timestep)-[n:NEXT]->(s2:Timestep)
WHERE e.complete AND ($include_eos OR NOT s2.is_eos)
WITH CASE $group_by WHEN 'answer_type' THEN e.answer_type ELSE e.question_type END AS grp, e, n, s1
RETURN grp AS `group`, count(DISTINCT e) AS examples, count(n) AS transitions,
       avg(n.js) AS mean_js_bits, max(n.js) AS max_js_bits, avg(s1.visual_mass) AS mean_step_visual_mass
ORDER BY mean_js_bits DESC
