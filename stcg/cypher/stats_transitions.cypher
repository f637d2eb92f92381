// stats: transitions
// One row per (question type, answer type) of r's complete examples: the NEXT transitions between
// answer steps, all of them (*_all) and those not into a final </s> step (*_inner): examples with
// one, transitions, the sum, non-null count and max of NEXT.js, and the sum and non-null count of
// the first step's visual_mass.
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_STEP]->(s1:Timestep)-[n:NEXT]->(s2:Timestep)
WHERE e.complete
WITH r, e.question_type AS question_type, e.answer_type AS answer_type, e, n, s1, NOT s2.is_eos AS inner
WITH r, question_type, answer_type,
     count(DISTINCT e) AS examples_all, count(DISTINCT CASE WHEN inner THEN e END) AS examples_inner,
     count(n) AS transitions_all, count(CASE WHEN inner THEN n END) AS transitions_inner,
     sum(n.js) AS sum_js_all, sum(CASE WHEN inner THEN n.js END) AS sum_js_inner,
     count(n.js) AS n_js_all, count(CASE WHEN inner THEN n.js END) AS n_js_inner,
     max(n.js) AS max_js_all, max(CASE WHEN inner THEN n.js END) AS max_js_inner,
     sum(s1.visual_mass) AS sum_visual_mass_all, sum(CASE WHEN inner THEN s1.visual_mass END) AS sum_visual_mass_inner,
     count(s1.visual_mass) AS n_visual_mass_all, count(CASE WHEN inner THEN s1.visual_mass END) AS n_visual_mass_inner
WITH r, {question_type: question_type, answer_type: answer_type, examples_all: examples_all,
         examples_inner: examples_inner, transitions_all: transitions_all, transitions_inner: transitions_inner,
         sum_js_all: sum_js_all, sum_js_inner: sum_js_inner, n_js_all: n_js_all, n_js_inner: n_js_inner,
         max_js_all: max_js_all, max_js_inner: max_js_inner, sum_visual_mass_all: sum_visual_mass_all,
         sum_visual_mass_inner: sum_visual_mass_inner, n_visual_mass_all: n_visual_mass_all,
         n_visual_mass_inner: n_visual_mass_inner} AS s
