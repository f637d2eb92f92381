// fragment: run_scope
// Binds r to the run a template reads: the run whose uid or name is $run_id, or, when $run_id is
// null, the latest run with status 'complete' (never a 'partial', 'running' or 'failed' one).
// Use it as the single line `// @include run_scope`; the including template declares
// `// param: run_id string = null` (or without a default, to require a run).
MATCH (r:Run)
WHERE CASE WHEN $run_id IS NULL THEN r.status = 'complete' ELSE r.uid = $run_id OR r.name = $run_id END
WITH r ORDER BY r.finished_at DESC LIMIT 1
