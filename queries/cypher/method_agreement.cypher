// name: method_agreement
// question: Do two attribution methods point at the same regions? Per question type: the mean Spearman rank correlation of their region attributions over examples (ties share their average rank), its spread, and how often their top region is the same. Runs ingested with --attributions only.
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: method_a string = "attention"  -- first method (e.g. attention, rollout, relevancy, gradcam, occlusion)
// param: method_b string = "rollout"  -- second method
// param: by_question_type bool = true  -- one row per question type (false: one row for the whole run)
// param: min_examples int = 1 [1..]  -- groups with fewer examples are left out
// @include run_scope
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_EXPLANATION]->(a:Explanation {method: $method_a})
WHERE e.complete
MATCH (e)-[:HAS_EXPLANATION]->(b:Explanation {method: $method_b})
WITH e, a.attribution AS xa, b.attribution AS xb
// average ranks (1 = smallest; ties share their mean rank), as scipy.stats.spearmanr
WITH e, xa, xb,
     [v IN xa | size([w IN xa WHERE w < v]) + (size([w IN xa WHERE w = v]) + 1) / 2.0] AS ra,
     [v IN xb | size([w IN xb WHERE w < v]) + (size([w IN xb WHERE w = v]) + 1) / 2.0] AS rb,
     reduce(m = xa[0], v IN xa | CASE WHEN v > m THEN v ELSE m END) AS max_a,
     reduce(m = xb[0], v IN xb | CASE WHEN v > m THEN v ELSE m END) AS max_b
WITH e, ra, rb, (size(ra) + 1) / 2.0 AS mid,
     [i IN range(0, size(xa) - 1) WHERE xa[i] = max_a][0] AS top_a,
     [i IN range(0, size(xb) - 1) WHERE xb[i] = max_b][0] AS top_b
WITH e, top_a, top_b,
     reduce(s = 0.0, i IN range(0, size(ra) - 1) | s + (ra[i] - mid) * (rb[i] - mid)) AS cov,
     reduce(s = 0.0, v IN ra | s + (v - mid) * (v - mid)) AS va,
     reduce(s = 0.0, v IN rb | s + (v - mid) * (v - mid)) AS vb
WITH CASE WHEN $by_question_type THEN e.question_type END AS question_type, top_a = top_b AS same_top,
     CASE WHEN va > 0 AND vb > 0 THEN cov / sqrt(va * vb) END AS rho
WITH question_type, count(*) AS examples, count(rho) AS defined, avg(rho) AS mean_spearman, stDev(rho) AS sd_spearman,
     min(rho) AS min_spearman, max(rho) AS max_spearman, avg(CASE WHEN same_top THEN 1.0 ELSE 0.0 END) AS same_top_region
WHERE examples >= $min_examples
RETURN question_type, $method_a AS method_a, $method_b AS method_b, examples, defined, mean_spearman, sd_spearman,
       min_spearman, max_spearman, same_top_region
ORDER BY examples DESC, question_type
