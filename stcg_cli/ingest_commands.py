"""``stcg ingest``: a dataset into Neo4j as STCGs."""

from __future__ import annotations

import click

from stcg_cli.engine_options import engine_config, engine_options
from stcg_cli.options import neo4j_options, settings_from


@click.command("ingest")
@click.option(
    "--dataset",
    default="easy-vqa",
    show_default=True,
    help="easy-vqa | vqa-v2:<folder with the official JSON + COCO images> | hf:<save_to_disk folder or dataset name>.",
)
@click.option("--split", default=None, help="Split [easy-vqa: test; vqa-v2: val2014; hf: validation].")
@click.option("--limit", default=None, type=int, help="Only the first N (>= 1) selected questions.")
@click.option(
    "--sample", default=None, type=int, help="A seeded random sample of N (>= 1) questions (instead of the first N)."
)
@click.option("--question-type", default=None, help="Only questions whose type starts with this (e.g. 'what color').")
@click.option("--answer-type", default=None, help="Only this answer type (yes/no, number, other).")
@click.option(
    "--shard", default=None, help="i/N: this worker's share of the selection (0 <= i < N), for N parallel workers."
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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@neo4j_options
def ingest(dataset, split, limit, sample, question_type, answer_type, shard, batch_size, run_name, store, quiet, **kw):
    """Turn a VQA dataset into STCGs in Neo4j (resumable: run the same command again to continue).

    Each example's nodes and links are written with MERGE on stable keys and marked complete
    last; its dense arrays go to the file store. Failed examples are recorded with their reason
    (in Neo4j and in <store>/<run>/failures.jsonl) and the run continues; a run none of whose
    examples could be explained ends with status 'failed' and exit code 1.
    """
    from ingest.pipeline import IngestConfig, run_ingest

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
        batch_size=batch_size,
        run_name=run_name,
        store=store,
        engine=engine,
    )
    settings = settings_from(kw["uri"], kw["username"], kw["password"], kw["database"])
    summary = run_ingest(cfg, settings, log=click.echo, progress=not quiet)
    click.echo(summary.describe())
    if summary.failures:
        click.echo(f"failures and their reasons: {summary.failure_log}")
