// run_finish: counts and status of a Run at the end of a command (see ingest.pipeline.end_run).
// $finished: the whole selection was worked through by an unsharded command; $live: how many OTHER commands
// hold a live lease (while one does, the run stays 'running').
MATCH (r:Run {uid: $run_id})
OPTIONAL MATCH (e:Example {run_id: $run_id})
WITH r, count(CASE WHEN e.complete THEN 1 END) AS complete, count(CASE WHEN e.failed THEN 1 END) AS failed
WITH r, complete, failed, r.status AS before,
     $live = 0 AND ($finished OR (r.n_total IS NOT NULL AND complete + failed >= r.n_total)) AS done
WITH r, complete, failed, before, done,
     CASE WHEN $live > 0 THEN 'running' WHEN NOT done THEN 'partial' WHEN complete = 0 THEN 'failed'
          ELSE 'complete' END AS status
SET r.n_complete = complete, r.n_failed = failed, r.updated_at = datetime(), r.status = status,
    r.finished_at = CASE WHEN done AND before IN ['complete', 'failed'] AND NOT $finished THEN r.finished_at
                         ELSE datetime() END
RETURN complete, failed, status, r.n_total AS total,
       done AND NOT $finished AND NOT before IN ['complete', 'failed'] AS finalised
