"""Batch ingestion: dataset -> batches -> STCG engine -> rows -> Neo4j (and the file store).

Before any model work: every argument is checked (``IngestConfig.validate``, then the engine's
settings against the checkpoint's config), the selection is made, and the run is created or resumed
in ONE write transaction (``claim_run``) that also checks its name and identity, so two commands
racing for one run name cannot both get in. The run id is ``--run-name`` exactly as given, or
``run-<hash>`` of everything that determines the result, so running the same command again resumes:
complete examples are skipped and the rest are written with MERGE (no duplicates).

This module is the one entry point (``run_ingest``): it checks, selects and picks a driver for the
model work, ``ingest.drivers.threads`` (model work in the calling thread, a writer thread behind a
bounded queue) or ``ingest.drivers.ray_data`` (``--ray``). Both drivers share the run's life
(``ingest.lifecycle``) and one batch's steps (``ingest.steps``) and never import each other. An example
is visible as complete (``Example.complete = true``) only after all its
nodes and links are written. A run that ends with no complete example is ``failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from ingest.config import IngestConfig, IngestSummary, make_run_id
from ingest.lifecycle import RunStart, end_run, record_params, start_run
from ingest.runs import check_run_name, claim_run, finalize_run, finish_run, run_name_key
from ingest.sinks.neo4j import Neo4jSink
from ingest.sinks.registry import resolve_sink
from ingest.steps import batch_rows, explain_batch, load_batch, one_line, record_failure
from stcg.config import Neo4jSettings
from stcg.errors import StcgError


def _neo4j_error(e: Exception) -> StcgError:
    """A Neo4j refusal (wrong database, missing rights, ...) as one line."""
    code = getattr(e, "code", None) or type(e).__name__
    message = getattr(e, "message", None) or str(e)
    return StcgError(f"Neo4j refused the ingestion: {code}: {one_line(message)}")


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

    from stcg_model.families.loading import checkpoint_config, default_model

    cfg.validate()
    model_name = cfg.engine.model or default_model(cfg.dataset)
    replace(cfg.engine, masks=True).validate(checkpoint_config(model_name))  # layer indices, top-k, ... vs the model
    examples, total = _select(cfg, log)
    cfg.engine.attribution_names()  # oracle / random named for a dataset without masks: one line
    kind, arg = resolve_sink(cfg.sink)
    if kind.database:
        settings = settings or Neo4jSettings.from_env()
    ingest = pick_driver(cfg, settings)
    try:
        with kind.open(arg, settings, log) as sink:
            return ingest(cfg, model_name, examples, total, sink, log, progress)
    except (ClientError, DatabaseError, Forbidden) as e:
        raise _neo4j_error(e) from None


def pick_driver(cfg: IngestConfig, settings: Neo4jSettings | None) -> Callable[..., IngestSummary]:
    """The driver of the model work: ``ingest.drivers.threads`` (one process), or Ray Data with ``--ray``
    (CPU tasks read, actors explain, Ray tasks write; docs/ray.md), its optional extra checked first,
    before the database is touched. A driver is ``f(cfg, model_name, examples, total, sink, log, progress)``."""
    if cfg.ray is None:
        from ingest.drivers.threads import ingest_threads

        return ingest_threads
    from ingest.drivers.ray_data import check_ray, ray_ingest

    check_ray()
    return partial(ray_ingest, settings=settings)


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


__all__ = [  # the package's ingestion API, importable from here as before the split
    "IngestConfig",
    "IngestSummary",
    "run_ingest",
    "pick_driver",
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
