// name: question_type_regions
// question: For a question type (e.g. "what color"), which regions (grid row, col) carry the most dW under each perturbation? (spec Q3)
// param: run_id string = null  -- run id or name (default: the latest complete run)
// param: question_type string = "what color"  -- question types starting with this text
// param: per_perturbation int = 5 [1..]  -- regions kept per perturbation
// @include run_scope
// @include rows_regions
WITH s
WHERE s.question_type STARTS WITH $question_type
WITH s.kind AS perturbation, s.row AS row, s.col AS col, sum(s.abs_dW) AS total_abs_dW, sum(s.examples) AS examples
ORDER BY perturbation, total_abs_dW DESC, row, col
WITH perturbation, collect({row: row, col: col, total_abs_dW: total_abs_dW, examples: examples})[0..$per_perturbation] AS top
UNWIND range(0, size(top) - 1) AS i
RETURN perturbation, i + 1 AS rank, top[i].row AS row, top[i].col AS col, top[i].total_abs_dW AS total_abs_dW,
       top[i].examples AS examples
ORDER BY perturbation, rank
