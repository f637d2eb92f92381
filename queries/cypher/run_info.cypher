// name: run_info
// internal: true
// question: The run a command reads (by id or name, or the latest complete run): its id, status, file store root and counts.
// param: run_id string = null  -- run id or name (default: the latest complete run)
// @include run_scope
RETURN r.uid AS run_id, r.name AS name, r.status AS status, r.store AS store, r.model AS model, r.dataset AS dataset,
       r.split AS split, r.n_complete AS n_complete, toString(r.finished_at) AS finished_at
