// run_by_name: a Run by uid or name.
MATCH (r:Run) WHERE r.uid = $n OR r.name = $n RETURN r.uid AS uid
