"""``stcg ingest --ray [ADDRESS]``: the same ingestion on Ray Data, one model per GPU (docs/ray.md).

The driver (this process) does what the single-process path does before and after model work, with the
same functions (``ingest.lifecycle.start_run`` / ``end_run``, the batch steps of ``ingest.steps``): checks, the selection, the ONE atomic claim
of the run (so the run id, resume and refusal rules are those of the single-process path) and, at the end,
``finish_run`` (counts, status, exactly-once finalisation). In between, one Ray Data pipeline:

    the examples still to do, one row per model batch (``from_items``)
      -> read images, perturb and preprocess them   CPU tasks with a weightless engine (``load_batch``)
      -> explain the batch                           an actor pool, one model per actor: ``num_gpus=1`` per
                                                     GPU, else CPU actors with a fractional CPU share; each
                                                     writes its file-store shards and failures.jsonl lines
                                                     and returns the batch's ``GraphRows`` (``batch_rows``)
      -> write the batch                             Ray write tasks: the packed writer (``Neo4jSink.write``),
                                                     nodes and links first, completion markers last; each
                                                     returns the batch's ``Stats`` to the driver (its progress)

An example is complete in Neo4j only after all of it is written, so a driver or worker killed at any
moment loses nothing: the same command resumes (complete examples are skipped, the rest rewritten
with MERGE, nothing duplicated). A worker process that dies (a native crash, the OOM killer) is retried
a bounded number of times (``EXPLAIN_RETRIES``, ``TASK_RETRIES``); then Ray Data drops that batch and goes
on, the driver runs the examples so lost once more, one per batch, and records those lost again as
failed, so one example that always kills its worker fails alone and the run still finishes.
An error raised in a worker (``StcgError``: an unwritable store, Neo4j refusing) comes back as a row and
stops the run with its one line. A local Ray started here is shut down at the end; if this process is
killed, Ray's own reaper ends that local Ray with it. Ray is an optional extra (``pip install "stcg[ray]"``)
imported only here.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
import warnings
from dataclasses import dataclass, replace

from ingest.drivers.ray_stages import Stats, WorkerError, explainer_class, read_batches, user_error, write_batches
from stcg.errors import StcgError

RAY_EXTRA = 'pip install "stcg[ray]"'
MIN_RAY = (2, 60)
READ_CPUS = 0.25  # per read task: image decoding and perturbations
WRITE_CPUS = 0.25  # per write task: mostly waiting on Neo4j
# per CPU model actor: fractional, so read and write tasks still get scheduled; not READ_CPUS, or Ray Data
# would fuse the read stage into the actors (it fuses consecutive maps with equal resources)
CPU_ACTOR_CPUS = 0.5
MAX_BLOCKS = 1024  # input blocks (each one or more model batches)
# Retries after a worker process dies (a native crash, the OOM killer). Ray Data 2.60 retries for ever by
# default: its actor pools get max_restarts=-1 and max_task_retries=-1 (ray/data/_internal/execution/
# operators/actor_pool_map_operator.py, _apply_default_remote_args; Ray logs "There are infinite retries
# remaining") and its tasks max_retries=-1 (ray/data/_internal/remote_fn.py). Here a batch is tried at most
# 1 + EXPLAIN_RETRIES times by the model actors (each try whose actor dies costs a model reload), and read
# and write tasks 1 + TASK_RETRIES times; then Ray Data drops the batch (max_errored_blocks=-1 for this
# dataset only) and the driver retries its examples one per batch in a second pass, bounded the same way;
# an example lost there too is recorded failed with LOST_REASON.
EXPLAIN_RETRIES = 2
TASK_RETRIES = 2
LOST_REASON = (
    f"worker died: the Ray worker process died on each of its {1 + EXPLAIN_RETRIES} tries of this example "
    "alone (a native crash, or killed for lack of memory); Ray's worker logs say why"
)


def check_ray():
    """The ``ray`` module (``ray[data]`` >= 2.60), or a one-line ``StcgError`` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise StcgError(f"--ray needs Ray Data, which is not installed ({e.name or 'ray'}): {RAY_EXTRA}") from None
    try:
        version = tuple(int(x) for x in ray.__version__.split(".")[:2])
    except ValueError:
        version = MIN_RAY
    if version < MIN_RAY:
        raise StcgError(f"--ray needs Ray >= {MIN_RAY[0]}.{MIN_RAY[1]}, found {ray.__version__}: {RAY_EXTRA}")
    return ray


# --------------------------------------------------------------------------------------------- the cluster
def connect_ray(address: str, log) -> bool:
    """Join (``auto``, ``HOST:PORT``, ``ray://...``) or start (``local``) a Ray; True when this call did
    (then ``ray.shutdown()`` at the end stops a local Ray, or disconnects from a cluster). A process that is
    already a Ray driver (a notebook, the tests) keeps its Ray and gets False."""
    ray = check_ray()
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = "a running Ray cluster (auto)" if address == "auto" else f"Ray at {address}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StcgError(f"cannot connect to {where}: {first[:200]}; see docs/ray.md") from None
    except Exception as e:  # ray.exceptions.AuthenticationError and others: one line
        raise StcgError(f"cannot start or join Ray ({address}): {type(e).__name__}: {str(e)[:200]}") from None
    return True


@dataclass
class Plan:
    """How the model actors are placed: ``gpus`` (1 per actor, or 0 for CPU actors), ``cpus`` per actor,
    ``size`` of the pool, ``threads`` for torch in each CPU actor, ``device`` the actors' engine device."""

    size: int
    gpus: int
    cpus: float
    threads: int | None
    device: str

    def describe(self) -> str:
        each = f"1 GPU, {self.cpus:g} CPU" if self.gpus else f"{self.cpus:g} CPU, {self.threads} torch threads"
        return f"{self.size} model actor{'s' if self.size != 1 else ''} ({each} each)"


def plan_actors(device: str, workers: int | None, resources: dict, nodes: int) -> Plan:
    """One model per GPU when the cluster has GPUs and ``--device`` allows them (``--workers`` or every GPU);
    else CPU actors (``--workers`` or one per node), each reserving a fractional CPU (so read and write tasks
    are not starved) and using its share of the cores for torch."""
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus and device != "cpu":
        # Ray gives each actor its own GPU as cuda:0; "auto" resolves to it
        return Plan(size=workers or gpus, gpus=1, cpus=1.0, threads=None, device="auto" if device == "auto" else "cuda")
    if device.startswith("cuda"):
        raise StcgError(f"--device {device} with --ray, but the Ray cluster has no GPU; use --device cpu or auto")
    size = workers or max(1, nodes)
    return Plan(size=size, gpus=0, cpus=CPU_ACTOR_CPUS, threads=max(1, math.floor(cpus / size)), device="cpu")


# --------------------------------------------------------------------------------------------- the run
def ray_ingest(cfg, model_name: str, examples: list, total: int, sink, log, progress, settings=None):
    """``ingest.drivers.threads.ingest_threads`` on Ray Data: same claim, rows, store and finish; see the module
    docstring."""
    from ingest.lifecycle import start_run

    ray = check_ray()
    start = start_run(cfg, model_name, examples, total, sink, log)
    try:
        return _ray_run(ray, cfg, model_name, start, sink, log, progress, settings)
    finally:
        start.close()  # the lease, if end_run did not end it (an error)


def _ray_run(ray, cfg, model_name: str, start, sink, log, progress, settings):
    from ingest.lifecycle import announce, end_run
    from ingest.steps import note_failure

    started_here = connect_ray(cfg.ray, log)
    try:
        nodes = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU"))
        plan = plan_actors(cfg.engine.device, cfg.workers, ray.cluster_resources(), nodes)
        announce(start, cfg, model_name, log)
        log(f"run {start.run_id}: Ray {ray.__version__}, {plan.describe()}")
        t0 = time.time()
        if start.todo:
            stats = _explain_all(ray, cfg, model_name, start, plan, settings, sink, log, progress)
            summary = start.summary
            done = sink.completed(start.run_id)  # what Neo4j holds, whatever reports a dead worker took with it
            summary.written = sum(1 for ex in start.todo if ex.example_id in done)
            for example_id, reason in dict(stats.failures).items():  # once each, should a task have run twice
                if example_id not in done:
                    note_failure(summary, example_id, reason)
            sink.writer.nodes_written += stats.nodes
            sink.writer.rels_written += stats.relationships
            sink.writer.retries += stats.retries
    finally:
        if started_here:
            ray.shutdown()
    return end_run(cfg, start, sink, log, t0)


def _explain_all(ray, cfg, model_name, start, plan: Plan, settings, sink, log, progress) -> Stats:
    """``start.todo`` explained and written on Ray: one pass in model batches, then the examples lost with a
    worker that died on every try (``EXPLAIN_RETRIES``) once more, one per batch; those lost again are
    recorded failed (``LOST_REASON``: a failure row written here and a failures.jsonl line)."""
    from ray.data import DataContext
    from tqdm.auto import tqdm

    from ingest.steps import batch_rows, record_failure

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours, over examples, as the single-process path shows it
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)

    try:  # the workers may run where the local password file is not: give them the password itself
        settings = replace(settings, password=settings.resolve_password())
    except StcgError:
        pass
    todo, bs, stats = start.todo, cfg.batch_size, Stats()
    bar = tqdm(total=len(todo), desc="ingest", unit="ex", disable=not progress)
    batches = [todo[s : s + bs] for s in range(0, len(todo), bs)]
    try:
        _run_pass(ray, cfg, model_name, start, plan, settings, batches, stats, bar)
        lost = _lost(todo, sink.completed(start.run_id), stats)
        if lost:
            log(f"run {start.run_id}: {len(lost)} examples lost with a Ray worker that died; trying them one by one")
            _run_pass(ray, cfg, model_name, start, plan, settings, [[ex] for ex in lost], stats, bar, alone=True)
            lost = _lost(lost, sink.completed(start.run_id), stats)
        if lost:
            failed = [(ex, LOST_REASON) for ex in lost]
            for ex, reason in failed:
                record_failure(start.store, ex, reason)
            sink.write(batch_rows(start.store, start.run_id, cfg.engine.top_k, [], failed))
            stats.failures.extend((ex.example_id, reason) for ex, reason in failed)
            bar.update(len(lost))
    finally:
        bar.close()
    return stats


def _lost(examples: list, done: set, stats: Stats) -> list:
    """The examples neither complete in Neo4j nor reported failed: those of batches Ray Data dropped."""
    failed = {example_id for example_id, _ in stats.failures}
    return [ex for ex in examples if ex.example_id not in done and ex.example_id not in failed]


def _run_pass(ray, cfg, model_name, start, plan: Plan, settings, batches: list, stats: Stats, bar, alone=False):
    """One Ray Data pipeline over ``batches`` (read tasks -> model actors -> write tasks), each batch's ``Stats``
    added to ``stats`` as it reaches the driver. A batch whose worker dies on every try is dropped; with
    ``alone`` (one example per batch) an actor holds one batch at a time, so it takes no other with it."""
    items = [{"batch": pickle.dumps(b, protocol=5)} for b in batches]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates Ray remote arguments given to map_batches as keywords (removal planned for Ray
        # 2.64) but has no named parameter for max_retries, max_restarts or max_task_retries: no other way
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = _stages(ds, cfg, model_name, start, plan, settings, batches, alone)
    ds.context.max_errored_blocks = -1  # this dataset only: go on past the batches of workers that died
    # a dropped batch is logged there with a traceback; the driver says it in one line (_explain_all)
    quiet = logging.getLogger("ray.data._internal.execution.streaming_executor_state")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    rows = iter(ds.iter_rows())
    try:
        for row in rows:
            item = pickle.loads(row["stats"])
            if isinstance(item, WorkerError):
                raise StcgError(item.message)
            stats.add(item)
            bar.update(item.examples)
    except Exception as e:
        if type(e) is StcgError:  # raised here
            raise
        cause = user_error(e)
        if cause is None:
            raise
        raise cause from None
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stops the pipeline when it ends early
        quiet.setLevel(level)


def _stages(ds, cfg, model_name, start, plan: Plan, settings, batches: list, alone: bool):
    """Read tasks -> model actors -> write tasks, with bounded retries (``EXPLAIN_RETRIES``, ``TASK_RETRIES``)."""
    from ray.data import ActorPoolStrategy

    ds = ds.map_batches(
        read_batches,
        batch_size=1,
        batch_format="numpy",
        num_cpus=READ_CPUS,
        max_retries=TASK_RETRIES,
        fn_kwargs={"model_name": model_name, "ecfg": cfg.engine},
    )
    job = {"engine": cfg.engine, "model_name": model_name, "device": plan.device, "threads": plan.threads}
    job["start"] = _slim(start)
    job["settings"] = settings
    ds = ds.map_batches(
        explainer_class(job),
        batch_size=1,
        batch_format="numpy",
        compute=ActorPoolStrategy(
            size=min(plan.size, len(batches)), max_tasks_in_flight_per_actor=1 if alone else None
        ),
        num_gpus=plan.gpus or None,
        num_cpus=plan.cpus,
        max_task_retries=EXPLAIN_RETRIES,
        # bounded, but never below the deaths this pass's tries can cause (each try ends at most its actor):
        # Ray Data never replaces an actor dead for good, so a pool that lost its only actor would wait for ever
        max_restarts=(1 + EXPLAIN_RETRIES) * len(batches),
    )
    ds = ds.map_batches(
        write_batches,
        batch_size=1,
        batch_format="numpy",
        num_cpus=WRITE_CPUS,
        max_retries=TASK_RETRIES,
        fn_kwargs={"settings": settings},
    )
    return ds


def _slim(start):
    """``start`` without the examples to do (the actors get those in their batches)."""
    return replace(start, todo=[], summary=None)


__all__ = [
    "check_ray",
    "connect_ray",
    "plan_actors",
    "ray_ingest",
    "Plan",
    "RAY_EXTRA",
    "EXPLAIN_RETRIES",
    "TASK_RETRIES",
    "LOST_REASON",
]
