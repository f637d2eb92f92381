"""Metrics of a stored run, from its file store (no model re-run)."""

from __future__ import annotations

import pandas as pd

from stcg.errors import StcgError

RESOLVE_RUN = """
MATCH (r:Run)
WHERE CASE WHEN $run_id IS NULL THEN r.status = 'complete' ELSE r.uid = $run_id OR r.name = $run_id END
RETURN r.uid AS run_id ORDER BY r.finished_at DESC LIMIT 1
"""

STORED_EXAMPLES = """
MATCH (r:Run {uid: $run_id})-[:HAS_EXAMPLE]->(e:Example)
WHERE e.complete
RETURN e.example_id AS example_id, e.question_type AS question_type, e.store_shard AS shard, e.store_key AS key
ORDER BY e.example_id
"""


def resolve_run(driver, run: str | None, database: str | None = None) -> str:
    records, _, _ = driver.execute_query(RESOLVE_RUN, run_id=run, database_=database)
    if not records:
        raise StcgError(
            f"no run {run!r} in the database" if run else "no complete run in the database; ingest one first"
        )
    return records[0]["run_id"]


def load_run_graphs(driver, run_id: str, store_root: str, database: str | None = None):
    """(graphs, question types) of every complete example of ``run_id``, read from the file store."""
    from collections import defaultdict

    from stcg.filestore import FileStore
    from stcg_model.graph import STCGraph

    records, _, _ = driver.execute_query(STORED_EXAMPLES, run_id=run_id, database_=database)
    if not records:
        return [], []
    store = FileStore.open(store_root, run_id)
    by_shard = defaultdict(dict)
    for r in records:
        by_shard[r["shard"]][r["key"]] = r
    graphs, qtypes = [], []
    for shard, keys in by_shard.items():
        for key, rec in keys.items():
            graphs.append(STCGraph.from_parts(*store.read(shard, key)))
            qtypes.append(rec["question_type"])
    return graphs, qtypes


def metrics_table(
    graphs, question_types, n_boot: int = 1000, seed: int = 0, by_question_type: bool = True
) -> pd.DataFrame:
    """One row per (group, metric): value and 95% bootstrap interval."""
    from stcg_model.metrics import summarise

    rows = []
    groups = {"all": list(range(len(graphs)))}
    if by_question_type:
        for i, qt in enumerate(question_types):
            groups.setdefault(qt or "unknown", []).append(i)
    for grp, idx in groups.items():
        for name, est in summarise([graphs[i] for i in idx], n_boot=n_boot, seed=seed).items():
            rows.append(
                {
                    "group": grp,
                    "metric": name,
                    "value": est.value,
                    "ci_low": est.low,
                    "ci_high": est.high,
                    "examples": est.n,
                }
            )
    return pd.DataFrame(rows)
