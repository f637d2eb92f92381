// run_clash: another Run whose name (case-insensitive) is this run's.
MATCH (r:Run)
WHERE r.uid <> $run_id
  AND (r.name_key = $key OR (r.name_key IS NULL AND (toLower(r.uid) = $key OR toLower(r.name) = $key)))
RETURN r.uid AS uid LIMIT 1
