"""``stcg ingest --ray [ADDRESS]``: the same ingestion on Ray Data, one model per GPU (docs/ray.md).

The driver (this process) does what the single-process path does before and after model work, with the
same functions (``ingest.pipeline.start_run`` / ``end_run``): checks, the selection, the ONE atomic claim
of the run (so the run id, resume and refusal rules are those of the single-process path) and, at the end,
``finish_run`` (counts, status, exactly-once finalisation). In between, one Ray Data pipeline:

    the examples still to do, one row per model batch (``from_items``)
      -> read images, perturb and preprocess them   CPU tasks with a weightless engine (``load_batch``)
      -> explain the batch                           an actor pool, one model per actor: ``num_gpus=1`` per
                                                     GPU, else CPU actors with a fractional CPU share; each
                                                     writes its file-store shards and failures.jsonl lines
                                                     and returns the batch's ``GraphRows`` (``batch_rows``)
      -> ``Neo4jDatasink``                           Ray write tasks: the packed writer (``Neo4jSink.write``),
                                                     nodes and links first, completion markers last

An example is complete in Neo4j only after all of it is written, so a driver or worker killed at any
moment loses nothing: the same command resumes (complete examples are skipped, the rest rewritten
with MERGE, nothing duplicated). A local Ray started here is shut down at the end; if this process is
killed, Ray's own reaper ends that local Ray with it. Ray is an optional extra (``pip install "stcg[ray]"``)
imported only here.
"""

from __future__ import annotations

import logging
import math
import pickle
import threading
import time
from dataclasses import dataclass, field, replace

from stcg.errors import StcgError

RAY_EXTRA = 'pip install "stcg[ray]"'
MIN_RAY = (2, 60)
READ_CPUS = 0.25  # per read task: image decoding and perturbations
WRITE_CPUS = 0.25  # per write task: mostly waiting on Neo4j
# per CPU model actor: fractional, so read and write tasks still get scheduled; not READ_CPUS, or Ray Data
# would fuse the read stage into the actors (it fuses consecutive maps with equal resources)
CPU_ACTOR_CPUS = 0.5
MAX_BLOCKS = 1024  # input blocks (each one or more model batches)


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


# --------------------------------------------------------------------------------------------- the stages
_HOST_ENGINES: dict = {}


def host_engine(model_name: str, ecfg):
    """A weightless engine (the model built on the ``meta`` device, its processor loaded) for the host work
    of ``load_batch`` in read tasks: no weights are read. Cached per worker process (Ray reuses them)."""
    key = (model_name, repr(ecfg))
    if key not in _HOST_ENGINES:
        import torch
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        from stcg_model.engine import STCGEngine
        from stcg_model.loading import LoadedModel, checkpoint_config

        with torch.device("meta"):
            model = Blip2ForConditionalGeneration(checkpoint_config(model_name))
        lm = LoadedModel(
            model=model.eval(),
            processor=Blip2Processor.from_pretrained(model_name),
            name=model_name,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        _HOST_ENGINES.clear()
        _HOST_ENGINES[key] = STCGEngine.from_config(lm, replace(ecfg, device="cpu"), host_workers=0)
    return _HOST_ENGINES[key]


def read_batches(rows: dict, model_name: str, ecfg) -> dict:
    """Read task: each row's model batch -> (batch, inputs, unreadable examples, HostBatch), pickled."""
    import numpy as np

    from ingest.pipeline import load_batch

    engine = host_engine(model_name, ecfg)
    out = []
    for blob in rows["batch"]:
        batch = pickle.loads(blob)
        out.append(pickle.dumps((batch, *load_batch(engine, batch)), protocol=5))
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
    failures.jsonl lines, and returns each batch's ``GraphRows`` with its counts for the datasink."""

    def __init__(self, job: dict):
        import torch

        from ingest.pipeline import Neo4jSink, record_params
        from stcg.db import connect
        from stcg_model.engine import STCGEngine
        from stcg_model.loading import load_model

        if job["threads"]:
            torch.set_num_threads(job["threads"])
        ecfg = replace(job["engine"], device=job["device"])
        self.start, self.top_k = job["start"], ecfg.top_k
        lm = load_model(ecfg.model, device=ecfg.device, dtype=ecfg.dtype_arg)
        self.engine = STCGEngine.from_config(lm, ecfg)
        settings = job["settings"]
        driver = connect(settings)
        try:  # Run.params and run.json, as the single-process path records them (same values from every actor)
            record_params(self.start, self.engine, Neo4jSink(driver, settings.database))
        finally:
            driver.close()

    def __call__(self, rows: dict) -> dict:
        import numpy as np

        from ingest.pipeline import batch_rows, explain_batch, record_failure

        store, out = self.start.store, []
        for blob in rows["work"]:
            batch, inputs, failed, host = pickle.loads(blob)
            graphs = []
            if inputs:
                graphs, broken = explain_batch(self.engine, batch, inputs, host)
                failed = failed + broken
            for ex, reason in failed:
                record_failure(store, ex, reason)
            graph_rows = batch_rows(store, self.start.run_id, self.top_k, graphs, failed)
            stats = Stats(len(batch), len(graphs), [(ex.example_id, reason) for ex, reason in failed])
            out.append(pickle.dumps((graph_rows, stats), protocol=5))
        return {"result": np.array(out, dtype=object)}


@dataclass
class Stats:
    """What a batch (or, summed, a write task or the run) did."""

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
    from ingest.pipeline import Neo4jSink
    from stcg.db import connect

    key = (settings.uri, settings.username, settings.database)
    if key not in _DRIVERS:
        _DRIVERS[key] = connect(settings)
    return Neo4jSink(_DRIVERS[key], settings.database)


def _make_datasink(settings, counter):
    """``Neo4jDatasink`` (defined when Ray is imported, so this module imports without Ray)."""
    from ray.data import Datasink

    class Neo4jDatasink(Datasink):
        """Writes each batch's ``GraphRows`` with the packed writer (``Neo4jSink.write``: one transaction for
        the subgraphs, then the completion markers); ``write`` returns the task's ``Stats``, summed on the
        driver by ``on_write_complete`` into ``total``. ``counter`` (a Ray actor) counts examples for the
        driver's progress bar."""

        def __init__(self):
            self.settings, self.counter, self.total = settings, counter, Stats()

        def write(self, blocks, ctx) -> Stats:
            from ray.data.block import BlockAccessor

            sink, done = _neo4j_sink(self.settings), Stats()
            for block in blocks:
                for blob in BlockAccessor.for_block(block).to_numpy("result"):
                    rows, stats = pickle.loads(blob)
                    sink.write(rows)
                    stats.nodes, stats.relationships = rows.n_nodes, rows.n_rels
                    done.add(stats)
                    self.counter.add.remote(stats.examples)
            done.retries = sink.retries
            return done

        def on_write_complete(self, write_result) -> None:
            for stats in write_result.write_returns:
                self.total.add(stats)

        def get_name(self) -> str:
            return "Neo4j"

    return Neo4jDatasink()


def _counter_class(ray):
    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self, n: int) -> None:
            self.n += n

        def get(self) -> int:
            return self.n

    return Counter


_USER_ERROR = "stcg.errors.StcgError: "


def user_error(e: BaseException) -> StcgError | None:
    """The one-line ``StcgError`` a worker raised, from Ray's wrapper of it, or None. Ray Data wraps a UDF's
    exception in ``UserCodeException`` and ships it to the driver without its cause: the original survives
    only in the remote traceback text, whose last ``stcg.errors.StcgError: <message>`` line is taken."""
    found = None
    for line in str(e).splitlines():
        if line.startswith(_USER_ERROR):
            found = line[len(_USER_ERROR) :].strip()
    return StcgError(found) if found else None


# --------------------------------------------------------------------------------------------- the run
def ray_ingest(cfg, model_name: str, examples: list, total: int, sink, log, progress, settings=None):
    """``ingest.pipeline._ingest`` on Ray Data: same claim, rows, store and finish; see the module docstring."""
    from ingest.pipeline import announce, end_run, note_failure, start_run

    ray = check_ray()
    start = start_run(cfg, model_name, examples, total, sink, log)
    started_here = connect_ray(cfg.ray, log)
    try:
        nodes = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU"))
        plan = plan_actors(cfg.engine.device, cfg.workers, ray.cluster_resources(), nodes)
        announce(start, cfg, model_name, log)
        log(f"run {start.run_id}: Ray {ray.__version__}, {plan.describe()}")
        t0 = time.time()
        if start.todo:
            stats = _run_pipeline(ray, cfg, model_name, start, plan, settings, progress)
            summary = start.summary
            summary.written = stats.written
            for example_id, reason in stats.failures:
                note_failure(summary, example_id, reason)
            sink.writer.nodes_written += stats.nodes
            sink.writer.rels_written += stats.relationships
            sink.writer.retries += stats.retries
    finally:
        if started_here:
            ray.shutdown()
    return end_run(cfg, start, sink, log, t0)


def _run_pipeline(ray, cfg, model_name, start, plan: Plan, settings, progress) -> Stats:
    from ray.data import ActorPoolStrategy, DataContext
    from tqdm.auto import tqdm

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours, over examples, as the single-process path shows it
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)

    try:  # the workers may run where the local password file is not: give them the password itself
        settings = replace(settings, password=settings.resolve_password())
    except StcgError:
        pass
    todo, bs = start.todo, cfg.batch_size
    batches = [todo[s : s + bs] for s in range(0, len(todo), bs)]
    items = [{"batch": pickle.dumps(b, protocol=5)} for b in batches]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    ds = ds.map_batches(
        read_batches,
        batch_size=1,
        batch_format="numpy",
        num_cpus=READ_CPUS,
        fn_kwargs={"model_name": model_name, "ecfg": cfg.engine},
    )
    job = {"engine": cfg.engine, "device": plan.device, "threads": plan.threads, "start": _slim(start)}
    job["settings"] = settings
    ds = ds.map_batches(
        explainer_class(job),
        batch_size=1,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=plan.size),
        num_gpus=plan.gpus or None,
        num_cpus=plan.cpus,
    )
    counter = _counter_class(ray).remote()
    datasink = _make_datasink(settings, counter)
    bar = tqdm(total=len(todo), desc="ingest", unit="ex", disable=not progress)
    stop = threading.Event()

    def follow():
        seen = 0
        while not stop.wait(0.5):
            try:
                n = ray.get(counter.get.remote(), timeout=5)
            except Exception:  # the counter is best effort: the bar only
                continue
            bar.update(n - seen)
            seen = n

    poller = threading.Thread(target=follow, name="stcg-ray-progress", daemon=True)
    poller.start()
    try:
        ds.write_datasink(datasink, ray_remote_args={"num_cpus": WRITE_CPUS})
    except Exception as e:
        if isinstance(e, StcgError) and type(e) is StcgError:  # raised here, not by a worker
            raise
        cause = user_error(e)
        if cause is None:
            raise
        raise cause from None
    finally:
        stop.set()
        poller.join()
        bar.update(bar.total - bar.n if datasink.total.examples == len(todo) else 0)
        bar.close()
        ray.kill(counter)
    return datasink.total


def _slim(start):
    """``start`` without the examples to do (the actors get those in their batches)."""
    return replace(start, todo=[], summary=None)


__all__ = ["check_ray", "connect_ray", "plan_actors", "ray_ingest", "Plan", "RAY_EXTRA"]
