// name: newer_runs
// internal: true
// question: Partial or running runs newer than the default run (the latest complete one): started or updated after it finished, newest first.
OPTIONAL MATCH (d:Run)
WHERE d.status = 'complete'
WITH d ORDER BY d.finished_at DESC LIMIT 1
MATCH (n:Run)
WHERE n.status IN ['partial', 'running'] AND (d IS NULL OR coalesce(n.updated_at, n.started_at) > d.finished_at)
RETURN d.uid AS default_run, d.name AS default_name, n.uid AS run_id, n.name AS name, n.status AS status,
       toString(coalesce(n.updated_at, n.started_at)) AS active_at
ORDER BY coalesce(n.updated_at, n.started_at) DESC
