// complete_runs: which of the loaded Runs are complete.
MATCH (r:Run) WHERE r.uid IN $runs AND r.status = 'complete' RETURN r.uid AS uid
