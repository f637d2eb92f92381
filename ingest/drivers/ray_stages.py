"""The stages of ``ingest.drivers.ray_data``'s pipeline, as they run in Ray's worker processes: read tasks
(``read_batches``: a weightless engine's host work), model actors (``explainer_class``: one engine each;
shards, failures.jsonl lines, ``GraphRows``) and write tasks (``write_batches``: the packed writer). Each
passes an error on as a ``WorkerError`` row; each batch's ``Stats`` go back to the driver."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace

from stcg.errors import StcgError

_HOST_ENGINES: dict = {}


def host_engine(model_name: str, ecfg):
    """A weightless engine (the model built on the ``meta`` device, its processor loaded) for the host work
    of ``load_batch`` in read tasks: no weights are read. Cached per worker process (Ray reuses them)."""
    key = (model_name, repr(ecfg))
    if key not in _HOST_ENGINES:
        from stcg_model.engine.core import STCGEngine
        from stcg_model.families.loading import weightless_model

        lm = weightless_model(model_name)  # the family's architecture on the meta device + its processor
        _HOST_ENGINES.clear()
        _HOST_ENGINES[key] = STCGEngine.from_config(lm, replace(ecfg, device="cpu"), host_workers=0)
    return _HOST_ENGINES[key]


@dataclass
class WorkerError:
    """An error raised in a worker, as one line. It travels down the pipeline as a row (each stage passes it
    on) and the driver raises it as ``StcgError``: a task that raises would only lose its block, since Ray
    Data goes on past failed blocks here (``max_errored_blocks=-1``, for workers that die)."""

    message: str

    @classmethod
    def of(cls, e: Exception) -> WorkerError:
        if isinstance(e, StcgError):
            return cls(str(e))
        return cls(f"a Ray worker failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}")


def read_batches(rows: dict, model_name: str, ecfg) -> dict:
    """Read task: each row's model batch -> (batch, inputs, unreadable examples, HostBatch), pickled."""
    import numpy as np

    from ingest.steps import load_batch

    out = []
    for blob in rows["batch"]:
        try:
            batch = pickle.loads(blob)
            item = (batch, *load_batch(host_engine(model_name, ecfg), batch))
        except Exception as e:
            item = WorkerError.of(e)
        out.append(pickle.dumps(item, protocol=5))
    return {"work": np.array(out, dtype=object)}


def explainer_class(job: dict):
    """The model actors' class, with ``job`` (engine settings, device, threads, the claimed run, Neo4j
    settings) in its closure, so Ray ships it with the class rather than as constructor arguments."""

    class Explainer(_Explainer):
        def __init__(self):
            super().__init__(job)

    return Explainer


class _Explainer:
    """A model actor: one engine for its whole life; explains batches, writes their file-store shards and
    failures.jsonl lines, and returns each batch's ``GraphRows`` with its counts for the write tasks."""

    def __init__(self, job: dict):
        import torch

        from ingest.lifecycle import record_params
        from ingest.sinks.neo4j import Neo4jSink
        from stcg.db import connect
        from stcg_model.engine.core import STCGEngine
        from stcg_model.families.loading import load_model

        if job["threads"]:
            torch.set_num_threads(job["threads"])
        ecfg = replace(job["engine"], device=job["device"])
        self.start, self.top_k = job["start"], ecfg.top_k
        lm = load_model(job["model_name"], device=ecfg.device, dtype=ecfg.dtype_arg)  # the run's model
        self.engine = STCGEngine.from_config(lm, ecfg)
        settings = job["settings"]
        driver = connect(settings)
        try:  # Run.params and run.json, as the single-process path records them (same values from every actor)
            record_params(self.start, self.engine, Neo4jSink(driver, settings.database))
        finally:
            driver.close()

    def __call__(self, rows: dict) -> dict:
        import numpy as np

        out = []
        for blob in rows["work"]:
            item = pickle.loads(blob)
            if not isinstance(item, WorkerError):
                try:
                    item = self.explain(*item)
                except Exception as e:
                    item = WorkerError.of(e)
            out.append(pickle.dumps(item, protocol=5))
        return {"result": np.array(out, dtype=object)}

    def explain(self, batch, inputs, failed, host):
        """One batch -> (its ``GraphRows``, its ``Stats``); its shard and failures.jsonl lines written."""
        from ingest.steps import batch_rows, explain_batch, record_failure

        store, graphs = self.start.store, []
        if inputs:
            graphs, broken = explain_batch(self.engine, batch, inputs, host)
            failed = failed + broken
        for ex, reason in failed:
            record_failure(store, ex, reason)
        graph_rows = batch_rows(store, self.start.run_id, self.top_k, graphs, failed)
        return graph_rows, Stats(len(batch), len(graphs), [(ex.example_id, reason) for ex, reason in failed])


@dataclass
class Stats:
    """What a batch (or, summed, a pass or the run) did."""

    examples: int = 0
    written: int = 0
    failures: list = field(default_factory=list)  # (example id, reason)
    nodes: int = 0
    relationships: int = 0
    retries: int = 0

    def add(self, other: Stats) -> None:
        self.examples += other.examples
        self.written += other.written
        self.failures.extend(other.failures)
        self.nodes += other.nodes
        self.relationships += other.relationships
        self.retries += other.retries


_DRIVERS: dict = {}


def _neo4j_sink(settings):
    """A ``Neo4jSink`` with one driver per Ray worker process (reused by the write tasks it runs)."""
    from ingest.sinks.neo4j import Neo4jSink
    from stcg.db import connect

    key = (settings.uri, settings.username, settings.database)
    if key not in _DRIVERS:
        _DRIVERS[key] = connect(settings)
    return Neo4jSink(_DRIVERS[key], settings.database)


def write_batches(rows: dict, settings) -> dict:
    """Write task: each batch's ``GraphRows`` with the packed writer (``Neo4jSink.write``: one transaction for
    the subgraphs, then the completion markers) -> the batch's ``Stats`` (or its ``WorkerError``), pickled."""
    import numpy as np

    out = []
    for blob in rows["result"]:
        item = pickle.loads(blob)
        if not isinstance(item, WorkerError):
            try:
                graph_rows, item = item
                sink = _neo4j_sink(settings)
                sink.write(graph_rows)
                item.nodes, item.relationships, item.retries = graph_rows.n_nodes, graph_rows.n_rels, sink.retries
            except Exception as e:
                item = WorkerError.of(e)
        out.append(pickle.dumps(item, protocol=5))
    return {"stats": np.array(out, dtype=object)}


_USER_ERROR = "stcg.errors.StcgError: "


def user_error(e: BaseException) -> StcgError | None:
    """The one-line ``StcgError`` a worker raised, from Ray's wrapper of it, or None (for what still reaches
    the driver as an exception, such as an actor that fails to start). Ray Data wraps a UDF's exception in
    ``UserCodeException`` and ships it to the driver without its cause: the original survives only in the
    remote traceback text, whose last ``stcg.errors.StcgError: <message>`` line is taken."""
    found = None
    for line in str(e).splitlines():
        if line.startswith(_USER_ERROR):
            found = line[len(_USER_ERROR) :].strip()
    return StcgError(found) if found else None
