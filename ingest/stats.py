"""Writing a run's statistics: the ``Stats`` nodes that whole-run templates read instead of scanning it.

When a run becomes ``complete`` (the last worker's finish, ``stcg ingest --finalize``, ``stcg load``),
``write_run_stats`` runs every statement of ``stcg.statistics`` over the run's complete examples, per
run and per attribution method, in one transaction. Each template reads them through a ``rows_<of>``
fragment (``queries/cypher/fragments``) that falls back to the same statement over the graph when the
run has no such nodes (a partial run, or one being written to), so the answer is the same either way,
up to float summation order. A command that writes into a run drops its statistics first
(``DROP_STATS``, in the claim transaction); they describe the run as of its last finish.
"""

from __future__ import annotations

import time

from ingest.lease import live_leases
from ingest.statements import statement
from stcg.errors import StcgError
from stcg.statistics import PER_METHOD, PER_RUN, write_statement

DROP_STATS = statement("drop_stats")

# Takes the Run's write lock (finishing shard workers take turns), and says whether its statistics
# are current: written over as many complete examples as the run has now.
STATS_LOCK = statement("stats_lock")


METHODS = statement("run_methods")


CHUNK_WIDTH = 4096  # values per ``dW`` chunk: what ``dissociation`` reads (twice) whatever the run's size


def write_run_stats(writer, run_id: str, force: bool = False, chunk_width: int = CHUNK_WIDTH) -> dict:
    """(Re)write the ``Stats`` nodes of ``run_id`` in one transaction, unless they are current (written
    over as many complete examples as the run has; ``force`` rewrites anyway). A run that is not
    ``complete``, or that another command holds a live lease on, gets none (``held``: True). Returns
    ``{written, examples, methods, seconds}``."""
    t0 = time.perf_counter()

    def work(tx):
        row = tx.run(STATS_LOCK, run_id=run_id).single()
        if row is None:
            raise StcgError(f"no run {run_id!r} in this database")
        if row["status"] != "complete" or live_leases(tx, run_id):
            # only a complete run with no command writing into it (a lease: ingest.lease) has statistics:
            # another command's writes would make them stale the moment they were written
            tx.run(DROP_STATS, run_id=run_id).consume()
            return {"written": False, "examples": row["complete"], "methods": [], "held": True}
        if not force and row["stats_examples"] == row["complete"]:
            return {"written": False, "examples": row["complete"], "methods": []}
        tx.run(DROP_STATS, run_id=run_id).consume()
        for of in PER_RUN:
            tx.run(write_statement(of), run_id=run_id, of=of, chunk_width=chunk_width, question_type="").consume()
        methods = ["attention"] + [m for m in (r["method"] for r in tx.run(METHODS, run_id=run_id)) if m != "attention"]
        for method in methods:
            for of in PER_METHOD:
                tx.run(write_statement(of), run_id=run_id, of=of, method=method).consume()
        return {"written": True, "examples": row["complete"], "methods": methods}

    out = writer.transaction("the run's statistics", work)
    return {**out, "seconds": time.perf_counter() - t0}


def drop_run_stats(writer, run_id: str) -> None:
    """Remove the ``Stats`` nodes of ``run_id`` (templates then compute from the graph)."""
    writer.transaction("the run's statistics", lambda tx: tx.run(DROP_STATS, run_id=run_id).consume())


__all__ = ["CHUNK_WIDTH", "DROP_STATS", "write_run_stats", "drop_run_stats"]
