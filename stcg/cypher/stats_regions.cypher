// stats: regions
// One row per (perturbation kind, question type, region row, region col) of r's complete examples:
// s.abs_dW (sum of MOVES.abs_dW) and s.examples (examples with such a link). Stored as one node per
// (kind, question type) holding the regions as parallel lists (row, col, abs_dW, examples). Only
// question types starting with $question_type: the writer passes '' (all), question_type_regions
// its own prefix, so computing them from the graph reads only the examples it asks about.
MATCH (r)-[:HAS_EXAMPLE]->(e:Example)-[:HAS_PERTURBATION]->(p:Perturbation)-[m:MOVES]->(g:Region)
WHERE e.complete AND e.question_type STARTS WITH $question_type
WITH r, p.kind AS kind, e.question_type AS question_type, g.row AS row, g.col AS col,
     sum(m.abs_dW) AS abs_dW, count(DISTINCT e) AS examples
WITH r, {kind: kind, question_type: question_type, row: row, col: col, abs_dW: abs_dW, examples: examples} AS s
