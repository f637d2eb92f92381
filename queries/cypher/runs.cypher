// name: runs
// question: Which runs exist, with their model and its family, dataset, status, example counts and file store?
// param: limit int = 50 [1..]  -- at most this many runs, newest first
MATCH (r:Run)
OPTIONAL MATCH (r)-[:HAS_EXAMPLE]->(e:Example)
WITH r, count(CASE WHEN e.complete THEN 1 END) AS complete, count(CASE WHEN e.failed THEN 1 END) AS failed
RETURN r.uid AS run_id, r.name AS name, r.model AS model, r.family AS family, r.dataset AS dataset, r.split AS split,
       r.status AS status, complete, failed, toString(r.started_at) AS started_at, toString(r.finished_at) AS finished_at,
       r.store AS store
ORDER BY r.started_at DESC
LIMIT $limit
