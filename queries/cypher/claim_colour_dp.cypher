// name: claim_colour_dp
// question: Claim 2: does color_shift change the answer probability most on colour questions? Mean |dp| and flip rate per perturbation, on colour questions (question type containing color/colour) and on the others (point estimates; `stcg claims` adds 95% intervals and the verdict)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: perturbation string = "color_shift"  -- the colour perturbation (flagged in the rows)
// @include run_scope
// @include rows_perturbations
WITH s, coalesce(s.question_type, 'unknown') AS question_type
WITH s, question_type,
     CASE WHEN toLower(question_type) CONTAINS 'color' OR toLower(question_type) CONTAINS 'colour'
          THEN 'colour' ELSE 'other' END AS questions
WITH s.kind AS perturbation, questions, sum(s.n) AS examples, sum(s.flips) AS flips, sum(s.n_abs_dp) AS n_abs_dp,
     sum(s.sum_abs_dp) AS sum_abs_dp, collect(DISTINCT question_type) AS question_types
RETURN perturbation, perturbation = $perturbation AS colour_perturbation, questions, examples,
       CASE WHEN n_abs_dp > 0 THEN sum_abs_dp / n_abs_dp END AS mean_abs_dp, toFloat(flips) / examples AS flip_rate,
       question_types
ORDER BY colour_perturbation DESC, questions, mean_abs_dp DESC, perturbation
