// name: claim_colour_dp
// question: Claim 2: does color_shift change the answer probability most on colour questions? Mean |dp| and flip rate per perturbation, on colour questions (question type containing color/colour) and on the others (point estimates; `stcg claims` adds 95% intervals and the verdict)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: perturbation string = "color_shift"  -- the colour perturbation (flagged in the rows)
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)
WHERE e.complete
WITH p, coalesce(e.question_type, 'unknown') AS question_type
WITH p, question_type,
     CASE WHEN toLower(question_type) CONTAINS 'color' OR toLower(question_type) CONTAINS 'colour'
          THEN 'colour' ELSE 'other' END AS questions
WITH p.kind AS perturbation, questions, count(p) AS examples, avg(p.abs_dp) AS mean_abs_dp,
     avg(CASE WHEN p.answer_changed THEN 1.0 ELSE 0.0 END) AS flip_rate,
     collect(DISTINCT question_type) AS question_types
RETURN perturbation, perturbation = $perturbation AS colour_perturbation, questions, examples, mean_abs_dp,
       flip_rate, question_types
ORDER BY colour_perturbation DESC, questions, mean_abs_dp DESC, perturbation
