"""``stcg ingest``: a dataset into Neo4j as STCGs."""

from __future__ import annotations

import click

from stcg.datasets import dataset_help, split_help
from stcg_cli.engine_options import RegistryHelpOption, engine_config, engine_options
from stcg_cli.options import neo4j_options, settings_from


def sink_help() -> str:
    from ingest.sinks import sink_help as from_registry

    return from_registry()


@click.command("ingest")
@click.option(
    "--dataset",
    default="easy-vqa",
    show_default=True,
    help=dataset_help(),
)
@click.option("--split", default=None, help=split_help())
@click.option("--limit", default=None, type=int, help="Only the first N (>= 1) selected questions.")
@click.option(
    "--sample", default=None, type=int, help="A seeded random sample of N (>= 1) questions (instead of the first N)."
)
@click.option("--question-type", default=None, help="Only questions whose type starts with this (e.g. 'what color').")
@click.option("--answer-type", default=None, help="Only this answer type (yes/no, number, other).")
@click.option(
    "--shard", default=None, help="i/N: this worker's share of the selection (0 <= i < N), for N parallel workers."
)
@click.option(
    "--masks",
    default=None,
    metavar="coco:PATH",
    help="Ground-truth masks from a COCO instances_*.json (vqa-v2/hf VQA-v2 examples): the union of the "
    "instances of the COCO categories the question names (names, plurals, synonyms; docs/masks.md); questions "
    "naming none get no mask. Masks make the oracle/random attribution methods and the ground-truth metrics "
    "available. COCO masks measure plausibility (agreement with annotated objects), not faithfulness.",
)
@engine_options
@click.option(
    "--batch-size", default=16, show_default=True, type=int, help="Examples per model pass (x 7 images each)."
)
@click.option(
    "--run-name",
    default=None,
    help="Name of the run, kept exactly as given; it is the run id (one folder name, no '/'; refused when it "
    "equals another run's name up to case) [default: run-<hash of the arguments>, so the same command resumes].",
)
@click.option(
    "--store",
    default="out/store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Root of the dense-array file store (recorded on the Run, so readers find it).",
)
@click.option(
    "--sink",
    default="neo4j",
    show_default=True,
    cls=RegistryHelpOption,
    help_from=lambda: sink_help() + " csv: for a first load of an empty database (docs/bulk.md).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help='Run on Ray Data (pip install "stcg[ray]"; docs/ray.md): --ray alone starts a local Ray on this '
    "machine, --ray auto joins the running cluster, --ray HOST:PORT or ray://HOST:PORT a given one. One model "
    "per GPU (CPU actors when there is none); neo4j sink only.",
)
@click.option(
    "--workers",
    default=None,
    type=int,
    help="With --ray: model actors in the pool [default: one per GPU of the cluster, else one per node].",
)
@click.option(
    "--finalize",
    is_flag=True,
    help="Only finalise the sharded run --run-name: mark it complete when every shard's examples are done "
    "(the last shard worker does this by itself) and rewrite its statistics (docs/schema.md); no model work.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@neo4j_options
def ingest(
    dataset, split, limit, sample, question_type, answer_type, shard, masks, batch_size, run_name, store, sink,
    ray_address, workers, finalize, quiet, **kw,
):  # fmt: skip
    """Turn a VQA dataset into STCGs in Neo4j (resumable: run the same command again to continue).

    Each example's nodes and links are written with MERGE on stable keys and marked complete
    last; its dense arrays go to the file store. Failed examples are recorded with their reason
    (in Neo4j and in <store>/<run>/failures.jsonl) and the run continues; a run none of whose
    examples could be explained ends with status 'failed' and exit code 1.

    Parallel workers: run the same command with --shard 0/N ... N-1/N (and the same --run-name); each
    leaves the run 'partial', and the one that finishes last makes it 'complete' with the counts of all
    shards (or run --finalize --run-name NAME afterwards).

    Ray: --ray [ADDRESS] runs the same ingestion (same run id, resume and finish) on Ray Data: CPU tasks
    read and perturb, an actor pool explains (one model per GPU), Ray tasks write to Neo4j (docs/ray.md).
    """
    from ingest.pipeline import IngestConfig, finalize_run, run_ingest
    from stcg.errors import StcgError

    if finalize:
        if not run_name:
            raise click.UsageError("--finalize needs --run-name (the sharded run to finalise)")
        settings = settings_from(kw["uri"], kw["username"], kw["password"], kw["database"])
        end = finalize_run(run_name, settings)
        done = end["complete"] + end["failed"]
        if end["status"] == "partial":
            total = "?" if end["total"] is None else end["total"]
            raise StcgError(
                f"run {end['run_id']} stays partial: {done} of {total} examples are done "
                f"({end['complete']} complete, {end['failed']} failed); run the shards that are missing",
                exit_code=1,
            )
        stats = end.get("stats")
        said = f"; statistics rewritten in {stats['seconds']:.1f} s" if stats and stats["written"] else ""
        click.echo(f"run {end['run_id']}: {end['status']} ({end['complete']} complete, {end['failed']} failed){said}")
        return
    if quiet:  # also the checkpoint loader's progress bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    engine = engine_config(kw)
    cfg = IngestConfig(
        dataset=dataset,
        split=split,
        limit=limit,
        question_type=question_type,
        answer_type=answer_type,
        sample=sample,
        shard=shard,
        masks=masks,
        batch_size=batch_size,
        run_name=run_name,
        store=store,
        sink=sink,
        ray=ray_address,
        workers=workers,
        engine=engine,
    )
    settings = settings_from(kw["uri"], kw["username"], kw["password"], kw["database"])
    summary = run_ingest(cfg, settings, log=click.echo, progress=not quiet)
    click.echo(summary.describe())
    if summary.failures:
        click.echo(f"failures and their reasons: {summary.failure_log}")
