"""Batch ingestion: dataset -> batches -> STCG engine -> rows -> Neo4j (and the file store).

Before any model work: every argument is checked (``IngestConfig.validate``, then the engine's
settings against the checkpoint's config), the selection is made, and the run is created or resumed
in ONE write transaction (``claim_run``) that also checks its name and identity, so two commands
racing for one run name cannot both get in. The run id is ``--run-name`` exactly as given, or
``run-<hash>`` of everything that determines the result, so running the same command again resumes:
complete examples are skipped and the rest are written with MERGE (no duplicates).

Model work runs in the calling thread; a writer thread drains a bounded queue of finished STCGs
into the file store and Neo4j (building the rows too), so the model never waits for either while
they keep up. An example is visible as complete (``Example.complete = true``) only after all its
nodes and links are written. A run that ends with no complete example is ``failed``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import partial

from ingest.lease import (
    Heartbeat,
    Lease,
)
from ingest.runs import (  # noqa: F401  (re-exported: the bookkeeping moved to ingest.runs)
    DONE,
    RUN_CLAIM,
    RUN_CLASH,
    RUN_FINISH,
    RUN_LOCK,
    RUN_MERGE,
    RUN_PARAMS,
    RUN_START,
    check_run,
    check_run_name,
    claim_run,
    clash_error,
    finalize_run,
    finish_run,
    identity_error,
    identity_hash,
    run_name_key,
)
from ingest.sinks.neo4j import Neo4jSink  # noqa: F401  (re-exported)
from ingest.sinks.registry import resolve_sink
from stcg import __version__
from stcg.config import Neo4jSettings
from stcg.errors import StcgError
from stcg_model.engine.engine_config import EngineConfig, check_count

_ENGINE_FIELDS = frozenset(f.name for f in fields(EngineConfig))


@dataclass(init=False)
class IngestConfig:
    """One ingestion: the engine's settings (``engine``) plus what to read and where to write.

    ``IngestConfig(dataset=..., top_k=3, seed=1, ...)`` also takes every ``EngineConfig`` field by
    name (folded into ``engine``). ``engine.seed`` also seeds ``sample``. Check with ``validate()``.
    """

    engine: EngineConfig
    dataset: str = "easy-vqa"  # easy-vqa | vqa-v2:<folder> | hf:<folder or name>
    split: str | None = None
    limit: int | None = None  # >= 1: the first N selected questions
    question_type: str | None = None  # prefix filter
    answer_type: str | None = None
    sample: int | None = None  # >= 1: a seeded random sample of N questions
    shard: str | None = None  # "i/N": this worker's share
    batch_size: int = 16  # >= 1 examples per model pass
    run_name: str | None = None  # kept as given (it is the run id); None = run-<hash of the identity>
    store: str = "out/store"  # root of the dense-array file store
    queue_size: int = 4  # >= 1 finished batches waiting for the writer thread
    sink: str = "neo4j"  # a registered sink (ingest.sinks): neo4j (Bolt) | csv:<folder> (neo4j-admin import files)
    ray: str | None = None  # Ray Data (ingest.ray_ingest): "local" (a Ray of this machine), "auto" or an address
    workers: int | None = None  # >= 1 model actors on Ray [default: one per GPU, else one per node]
    masks: str | None = None  # ground-truth masks for datasets without their own: coco:<instances JSON> (stcg.masks)

    def __init__(
        self,
        dataset: str = "easy-vqa",
        split: str | None = None,
        limit: int | None = None,
        question_type: str | None = None,
        answer_type: str | None = None,
        sample: int | None = None,
        shard: str | None = None,
        batch_size: int = 16,
        run_name: str | None = None,
        store: str = "out/store",
        queue_size: int = 4,
        sink: str = "neo4j",
        ray: str | None = None,
        workers: int | None = None,
        masks: str | None = None,
        engine: EngineConfig | None = None,
        **engine_fields,
    ):
        unknown = set(engine_fields) - _ENGINE_FIELDS
        if unknown:
            raise TypeError(f"IngestConfig got unexpected arguments {sorted(unknown)}")
        self.engine = replace(engine or EngineConfig(), **engine_fields)
        self.dataset, self.split, self.limit = dataset, split, limit
        self.question_type, self.answer_type, self.sample, self.shard = question_type, answer_type, sample, shard
        self.batch_size, self.run_name, self.store, self.queue_size = batch_size, run_name, store, queue_size
        self.sink, self.ray, self.workers = sink, ray, workers
        self.masks = masks

    def validate(self) -> IngestConfig:
        """This config, or a one-line ``StcgError`` for the first bad value (no model, data or database needed)."""
        from stcg.datasets import parse_shard

        # whether the examples carry masks is known once they are selected (run_ingest sets it then)
        replace(self.engine, masks=True).validate()
        check_count("--limit", self.limit)
        check_count("--sample", self.sample)
        check_count("--batch-size", self.batch_size)
        check_count("queue_size", self.queue_size)
        parse_shard(self.shard)
        sink_kind, _ = resolve_sink(self.sink)
        if self.run_name is not None:
            check_run_name(self.run_name)
        check_count("--workers", self.workers)
        if self.workers is not None and self.ray is None:
            raise StcgError("--workers sets the size of the Ray actor pool; use it with --ray")
        if self.ray is not None:
            if not isinstance(self.ray, str) or not self.ray.strip():
                raise StcgError("--ray got an empty address; give none (a local Ray), auto, or HOST:PORT")
            if not sink_kind.database:
                raise StcgError(f"--ray writes to Neo4j only; --sink {self.sink} works without --ray")
        return self

    def identity(self, model_name: str, model_fingerprint: str | None = None) -> dict:
        """What determines the result (not the shard, batch size, device or store). The keys and
        values are those of the flat config this replaced, so unchanged commands keep their run ids."""
        from stcg_model.engine.core import RESULTS_VERSION

        return {
            "results_version": RESULTS_VERSION,
            "model_fingerprint": model_fingerprint,
            "dataset": self.dataset,
            "split": self.split,
            "limit": self.limit,
            "question_type": self.question_type,
            "answer_type": self.answer_type,
            "sample": self.sample,
            **({"masks": self.masks} if self.masks is not None else {}),  # absent: ids of older runs stay
            **self.engine.identity(model_name),
        }


@dataclass
class IngestSummary:
    run_id: str
    examples: int = 0
    skipped: int = 0
    written: int = 0
    failures: int = 0
    nodes: int = 0
    relationships: int = 0
    seconds: float = 0.0
    retries: int = 0
    failure_log: str = ""
    status: str = "running"  # the Run's status at the end: complete | partial | failed
    failed_ids: list[str] = field(default_factory=list)
    first_reason: str = ""

    def describe(self) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"run {self.run_id}: {self.examples} examples selected, {self.skipped} already complete, "
            f"{self.written} written, {self.failures} failed; {self.nodes} nodes and {self.relationships} "
            f"relationships written in {self.seconds:.1f} s ({rate:.2f} examples/s)"
        )


def make_run_id(cfg: IngestConfig, model_name: str, model_fingerprint: str | None = None) -> str:
    """``--run-name`` exactly as given (checked), else ``run-<hash of the identity>``."""
    if cfg.run_name is not None:
        return check_run_name(cfg.run_name)
    return f"run-{identity_hash(cfg.identity(model_name, model_fingerprint))}"


def _example_mask(ex, image):
    """The example's ground-truth mask as (H, W) bool, checked against its image, or None."""
    import numpy as np

    mask = ex.load_mask()
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (image.height, image.width):
        raise StcgError(
            f"ground-truth mask is {mask.shape[1] if mask.ndim > 1 else '?'} x {mask.shape[0]} px "
            f"but the image is {image.width} x {image.height}"
        )
    return mask


def _load_inputs(batch):
    """VQAInputs for a batch, and (example, reason) for those that cannot be read."""
    from stcg_model.engine.core import VQAInput

    inputs, failures = [], []
    for ex in batch:
        try:
            if ex.invalid:  # text that no sink can store (stcg.datasets.check_text)
                raise StcgError(f"invalid text: {ex.invalid}")
            if not ex.question or not ex.question.strip():
                raise StcgError("empty question")
            image = ex.load_image()
            meta = ex.meta()
            meta["question_chars"] = len(ex.question)
            inputs.append(VQAInput(ex.example_id, image, ex.question, meta, _example_mask(ex, image)))
        except StcgError as e:
            failures.append((ex, str(e)))
        except Exception as e:  # an unexpected reader error must not stop the run
            failures.append((ex, f"{type(e).__name__}: {e}"))
    return inputs, failures


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def _store_error(store, what: str, e: OSError) -> StcgError:
    return StcgError(f"cannot write {what} in the file store {store.dir}: {e.strerror or e}; check --store")


def _neo4j_error(e: Exception) -> StcgError:
    """A Neo4j refusal (wrong database, missing rights, ...) as one line."""
    code = getattr(e, "code", None) or type(e).__name__
    message = getattr(e, "message", None) or str(e)
    return StcgError(f"Neo4j refused the ingestion: {code}: {_one_line(message)}")


def run_ingest(
    cfg: IngestConfig, settings: Neo4jSettings | None = None, log: Callable[[str], None] = print, progress: bool = True
) -> IngestSummary:
    """Ingest ``cfg.dataset`` into Neo4j; returns counts.

    Every argument is checked, the selection made and the run created (or resumed) with its identity
    in one atomic step before any model work. Raises a one-line ``StcgError`` for bad arguments, a
    refused run name, an unwritable store, and a run none of whose examples could be explained
    (``Run.status = 'failed'``, exit code 1).
    """
    from neo4j.exceptions import ClientError, DatabaseError, Forbidden

    from stcg_model.families.blip2.loading import checkpoint_config, default_model

    cfg.validate()
    model_name = cfg.engine.model or default_model(cfg.dataset)
    replace(cfg.engine, masks=True).validate(checkpoint_config(model_name))  # layer indices, top-k, ... vs the model
    examples, total = _select(cfg, log)
    cfg.engine.attribution_names()  # oracle / random named for a dataset without masks: one line
    kind, arg = resolve_sink(cfg.sink)
    if kind.database:
        settings = settings or Neo4jSettings.from_env()
    ingest = _ingest
    if cfg.ray is not None:  # Ray Data: CPU tasks read, actors explain, Ray tasks write (docs/ray.md)
        from ingest.ray_ingest import check_ray, ray_ingest

        check_ray()  # the optional extra is installed (before the database is touched)
        ingest = partial(ray_ingest, settings=settings)
    try:
        with kind.open(arg, settings, log) as sink:
            return ingest(cfg, model_name, examples, total, sink, log, progress)
    except (ClientError, DatabaseError, Forbidden) as e:
        raise _neo4j_error(e) from None


def _select(cfg: IngestConfig, log: Callable[[str], None] = lambda s: None) -> tuple[list, int]:
    """(this command's examples, the size of the whole selection: all shards together)."""
    from stcg.datasets import open_dataset, parse_shard

    selection = open_dataset(
        cfg.dataset,
        split=cfg.split,
        limit=cfg.limit,
        question_type=cfg.question_type,
        answer_type=cfg.answer_type,
        sample=cfg.sample,
        seed=cfg.engine.seed,
        log=log,
        masks=cfg.masks,
    )
    if not selection:
        raise StcgError(f"no question of {cfg.dataset} is selected by these filters; nothing to ingest")
    # the whole selection decides (every shard computes the same methods, so the run's identity is one)
    cfg.engine = replace(cfg.engine, masks=any(e.has_mask for e in selection))
    shard = parse_shard(cfg.shard)
    examples = selection if shard is None else selection[shard[0] :: shard[1]]  # as open_dataset shards
    return examples, len(selection)


@dataclass
class RunStart:
    """A claimed run, before model work: what both drivers of the loop (``_ingest`` here, the Ray path in
    ``ingest.ray_ingest``) need from ``start_run`` to explain ``todo`` and to ``end_run``."""

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


def start_run(cfg: IngestConfig, model_name: str, examples: list, total: int, sink, log) -> RunStart:
    """Schema, run id, store folders and the ONE atomic claim of the run (name, identity, creation or
    resume), then which examples are still to do. Nothing here loads the model."""
    from stcg.filestore import FileStore
    from stcg_model.families.blip2.loading import model_fingerprint

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
        raise _store_error(store, "run.json", e) from None
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
            first = f" (first: {summary.failed_ids[0]}: {_one_line(summary.first_reason, 160)})"
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


def _ingest(cfg: IngestConfig, model_name: str, examples: list, total: int, sink, log, progress) -> IngestSummary:
    from stcg_model.engine.core import STCGEngine
    from stcg_model.families.blip2.loading import load_model

    ecfg = cfg.engine
    start = start_run(cfg, model_name, examples, total, sink, log)
    try:
        lm = load_model(model_name, device=ecfg.device, dtype=ecfg.dtype_arg)  # the run's model, default included
        with STCGEngine.from_config(lm, ecfg) as engine:
            record_params(start, engine, sink)
            announce(start, cfg, model_name, log)
            t0 = time.time()
            _explain_and_write(cfg, engine, start.store, sink, start.run_id, start.todo, start.summary, progress)
        return end_run(cfg, start, sink, log, t0)
    finally:
        start.close()


# ---------------------------------------------------------------------------------------------------------
# One batch's steps, shared by the single-process loop below and the Ray workers (ingest.ray_ingest)


def load_batch(engine, batch: list) -> tuple[list, list, object]:
    """Reading a batch's images and the engine's host work (perturbed images, pixel tensors):
    ``(inputs, [(example, reason)] that could not be read, HostBatch or None)``. Needs only the engine's
    processor and settings, not its weights (the Ray path runs it in CPU tasks with a weightless engine)."""
    inputs, failed = _load_inputs(batch)
    host = None
    if inputs:
        try:
            host = engine.prepare_batch(inputs)
        except Exception:  # explain_batch redoes it example by example and records the culprit
            host = None
    return inputs, failed, host


def explain_batch(engine, batch: list, inputs: list, host) -> tuple[list, list]:
    """``(STCGs, [(example, reason)])`` of one batch: the whole batch in one pass, else example by example so
    that only the example that breaks it fails (``model: <error>``)."""
    try:
        return engine.explain_batch(inputs, host), []
    except Exception:
        graphs, failed = [], []
        for inp in inputs:  # isolate the example that breaks the batch
            try:
                graphs.extend(engine.explain_batch([inp]))
            except Exception as e:
                ex = next(b for b in batch if b.example_id == inp.example_id)
                failed.append((ex, f"model: {type(e).__name__}: {str(e)[:200]}"))
        return graphs, failed


def record_failure(store, ex, reason: str) -> None:
    """One line of ``failures.jsonl`` (appended atomically: concurrent Ray workers share the file)."""
    try:
        store.record_failure(ex.example_id, reason, {"image_path": ex.image_path, "question": ex.question[:200]})
    except OSError as e:
        raise _store_error(store, "failures.jsonl", e) from None


def batch_rows(store, run_id: str, top_k: int, graphs: list, failed: list):
    """The ``GraphRows`` of one batch: its file-store shard first (the Example nodes point into it), then the
    examples' subgraphs and the failed examples' rows."""
    from ingest.rows import GraphRows, failure_rows, graph_rows

    rows = GraphRows()
    if graphs:
        try:
            refs = store.write_shard([g.to_record() for g in graphs])
        except OSError as e:
            raise _store_error(store, "a shard", e) from None
        for g in graphs:
            rows.extend(graph_rows(g, run_id, top_k, refs[g.example_id]))
    for ex, reason in failed:
        meta = {
            "question": ex.question[:2000],
            "question_type": ex.question_type,
            "answer_type": ex.answer_type,
            "image_path": ex.image_path,
        }
        rows.extend(failure_rows(run_id, ex.example_id, reason, meta))
    return rows


def note_failure(summary: IngestSummary, example_id: str, reason: str) -> None:
    summary.failures += 1
    summary.failed_ids.append(example_id)
    if not summary.first_reason:
        summary.first_reason = reason


def _explain_and_write(cfg, engine, store, sink, run_id: str, todo: list, summary, progress: bool) -> None:
    """The model loop (this thread) and the writer thread (file store, rows, the sink) for ``todo``."""
    from tqdm.auto import tqdm

    from stcg_model.engine.core import prefetched

    top_k = cfg.engine.top_k
    q: queue.Queue = queue.Queue(maxsize=max(1, cfg.queue_size))
    errors: list[BaseException] = []

    def drain():
        """The writer thread: file store, rows and Neo4j, so the model thread never waits on them."""
        while True:
            item = q.get()
            if item is None:
                return
            try:
                if not errors:
                    sink.write(batch_rows(store, run_id, top_k, *item))
            except BaseException as e:  # surfaced in the main thread
                errors.append(e)

    thread = threading.Thread(target=drain, name="neo4j-writer", daemon=True)
    thread.start()

    def log_failure(ex, reason):
        note_failure(summary, ex.example_id, reason)
        record_failure(store, ex, reason)

    bar = tqdm(total=len(todo), desc="ingest", unit="ex", disable=not progress)
    batches = [todo[s : s + cfg.batch_size] for s in range(0, len(todo), cfg.batch_size)]
    ahead = ThreadPoolExecutor(1, thread_name_prefix="stcg-prefetch")
    try:
        # on a GPU the next batch is read and prepared while the model works on this one
        for (inputs, failed, host), batch in zip(
            prefetched(ahead if engine.prefetch else None, lambda b: load_batch(engine, b), batches), batches
        ):
            if errors:
                break
            for ex, reason in failed:
                log_failure(ex, reason)
            graphs = []
            if inputs:
                graphs, broken = explain_batch(engine, batch, inputs, host)
                for ex, reason in broken:
                    log_failure(ex, reason)
                failed.extend(broken)
            summary.written += len(graphs)
            q.put((graphs, failed))
            bar.update(len(batch))
    finally:
        ahead.shutdown(wait=True, cancel_futures=True)
        q.put(None)
        thread.join()
        bar.close()
    if errors:
        raise errors[0]


__all__ = [
    "IngestConfig",
    "IngestSummary",
    "run_ingest",
    "make_run_id",
    "check_run_name",
    "run_name_key",
    "claim_run",
    "finish_run",
    "finalize_run",
    "Neo4jSink",
    "RunStart",
    "start_run",
    "record_params",
    "end_run",
    "load_batch",
    "explain_batch",
    "batch_rows",
    "record_failure",
]
