"""A run's life around the model work, the same for both drivers: ``start_run`` (schema, run id, store,
the ONE atomic claim, what is left to do), ``record_params`` (``Run.params`` and ``run.json``), ``announce``
and ``end_run`` (counts, status, exactly-once finalisation)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from ingest.config import IngestConfig, IngestSummary, make_run_id
from ingest.lease import Heartbeat, Lease
from ingest.runs import identity_hash, run_name_key
from ingest.steps import one_line, store_error
from stcg import __version__
from stcg.errors import StcgError


@dataclass
class RunStart:
    """A claimed run, before model work: what both drivers (``ingest.drivers.threads``,
    ``ingest.drivers.ray_data``) need from ``start_run`` to explain ``todo`` and to ``end_run``."""

    run_id: str
    identity: dict
    store: object  # stcg.filestore.FileStore
    props: dict
    todo: list  # the examples not yet complete
    summary: IngestSummary
    started: str  # ISO time, for run.json
    lease: Lease | None = None  # this command's hold on the run (ingest.lease), from claim to finish
    heartbeat: Heartbeat | None = None
    sink: object = None

    def params(self, engine) -> str:
        """``Run.params``: the identity and the engine's settings as it resolved them (JSON)."""
        return json.dumps({**self.identity, "engine": engine.params}, sort_keys=True, default=str)

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    def close(self) -> None:
        """End the lease if ``end_run`` did not (the command stops on an error): the run is left to the
        next command, its statistics already dropped by the claim. Best effort: a lease that cannot be
        released here ends anyway when this process does."""
        self.stop_heartbeat()
        if self.lease is not None and self.sink is not None:
            lease, self.lease = self.lease, None
            try:
                self.sink.release(self.run_id, lease.uid)
            except Exception:
                pass

    def __getstate__(self):  # Ray ships a slim copy to its actors: no thread, no sink
        return {**self.__dict__, "heartbeat": None, "sink": None}


def model_family(model_name: str) -> str:
    """The name of the model family of a checkpoint (``blip2``), from its config."""
    from stcg_model.families.loading import checkpoint_config
    from stcg_model.families.registry import family_of

    return family_of(checkpoint_config(model_name)).name


def start_run(cfg: IngestConfig, model_name: str, examples: list, total: int, sink, log) -> RunStart:
    """Schema, run id, store folders and the ONE atomic claim of the run (name, identity, creation or
    resume), then which examples are still to do. Nothing here loads the model."""
    from stcg.filestore import FileStore
    from stcg_model.families.loading import model_fingerprint

    ecfg = cfg.engine
    specs = ecfg.perturbation_specs()
    sink.prepare()
    fingerprint = model_fingerprint(model_name)
    identity = cfg.identity(model_name, fingerprint)
    run_id = make_run_id(cfg, model_name, fingerprint)
    sink.check_run(run_id, identity_hash(identity))
    # the store before the Run (an unusable --store is refused before anything reaches Neo4j); a command
    # refused by ``claim_run`` below can at worst leave empty folders of that run id, which it reuses
    store = FileStore.create(cfg.store, run_id)
    summary = IngestSummary(run_id=run_id, examples=len(examples))
    props = {
        "name": run_id,
        "name_key": run_name_key(run_id),
        "model": model_name,
        "family": model_family(model_name),  # the model family explaining it (stcg_model.families.registry)
        "dataset": cfg.dataset,
        "split": cfg.split or "",
        "perturbations": [s.kind for s in specs],
        "top_k": ecfg.top_k,
        "layers": ecfg.layers,
        "code_version": __version__,
        "n_selected": len(examples),
        "n_total": total,  # the whole selection, all shards: a sharded run is complete when all are done
    }
    # the one atomic step: name checks, identity check and Run creation (or resume), before model work
    lease = Lease.new(cfg.shard)
    recorded_store = sink.claim_run(run_id, identity_hash(identity), str(store.root), props, lease=lease)
    beat = Heartbeat(partial(sink.heartbeat, run_id, lease.uid)).start()
    if recorded_store != str(store.root):
        log(
            f"warning: run {run_id} keeps its file store at {recorded_store} (where its arrays are); "
            f"this command writes to {store.root}: pass --store {recorded_store} to keep them together"
        )
    start = RunStart(run_id, identity, store, props, [], summary, datetime.now(UTC).isoformat(), lease, beat, sink)
    try:
        summary.failure_log = str(store.dir / "failures.jsonl")
        done = sink.completed(run_id)
    except BaseException:
        start.close()
        raise
    start.todo = [e for e in examples if e.example_id not in done]
    summary.skipped = len(examples) - len(start.todo)
    return start


def record_params(start: RunStart, engine, sink) -> str:
    """``Run.params`` in Neo4j and ``run.json`` in the store (both idempotent: every Ray worker writes the
    same values); returns the params JSON."""
    params = start.params(engine)
    sink.set_params(start.run_id, params)
    store = start.store
    try:
        store.write_run(
            {
                "run_id": start.run_id,
                **start.props,
                "store": str(store.root),
                "params": params,
                "identity": identity_hash(start.identity),
                "started": start.started,
            }
        )
    except OSError as e:
        raise store_error(store, "run.json", e) from None
    return params


def end_run(cfg: IngestConfig, start: RunStart, sink, log, t0: float) -> IngestSummary:
    """Counts and status (``sink.finish``: finalises the run exactly once); a one-line ``StcgError`` (exit
    code 1) when nothing of the run could be explained."""
    summary, run_id, todo = start.summary, start.run_id, start.todo
    finished = len(todo) == 0 or summary.written + summary.failures == len(todo)
    start.stop_heartbeat()
    end = sink.finish(run_id, finished and cfg.shard is None, lease_uid=start.lease.uid if start.lease else None)
    start.lease = None  # ended by the finish
    if end["status"] == "running":
        log(f"run {run_id}: another command is still writing into it; it finishes the run when it ends")
    summary.status = end["status"]
    if end.get("finalised"):
        log(f"run {run_id}: every shard's examples are done; the run is {end['status']} ({end['complete']} complete)")
    summary.seconds = time.time() - t0
    summary.nodes, summary.relationships, summary.retries = sink.nodes_written, sink.rels_written, sink.retries
    n = summary.examples
    nothing = end["complete"] == 0 if cfg.shard is None else bool(n) and summary.skipped + summary.written == 0
    if nothing:
        first = ""
        if summary.failed_ids:
            first = f" (first: {summary.failed_ids[0]}: {one_line(summary.first_reason, 160)})"
        raise StcgError(
            f"run {run_id} failed: none of its {n} selected examples could be explained{first}; "
            f"every reason is in {summary.failure_log}",
            exit_code=1,
        )
    return summary


def announce(start: RunStart, cfg: IngestConfig, model_name: str, log) -> None:
    kinds = ", ".join(s.kind for s in cfg.engine.perturbation_specs())
    log(
        f"run {start.run_id}: {start.summary.examples} examples ({start.summary.skipped} already complete), "
        f"model {model_name}, perturbations {kinds}"
    )
