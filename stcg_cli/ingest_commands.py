"""``stcg ingest``: a dataset into Neo4j as STCGs."""

from __future__ import annotations

import click

from stcg_cli.options import neo4j_options, settings_from


@click.command("ingest")
@click.option(
    "--dataset",
    default="easy-vqa",
    show_default=True,
    help="easy-vqa | vqa-v2:<folder with the official JSON + COCO images> | hf:<save_to_disk folder or dataset name>.",
)
@click.option("--split", default=None, help="Split [easy-vqa: test; vqa-v2: val2014; hf: validation].")
@click.option("--limit", default=None, type=int, help="Only the first N selected questions.")
@click.option(
    "--sample", default=None, type=int, help="A seeded random sample of N questions (instead of the first N)."
)
@click.option("--question-type", default=None, help="Only questions whose type starts with this (e.g. 'what color').")
@click.option("--answer-type", default=None, help="Only this answer type (yes/no, number, other).")
@click.option(
    "--shard", default=None, help="i/N: this worker's share of the selection (0 <= i < N), for N parallel workers."
)
@click.option("--model", default=None, help="BLIP-2 checkpoint [default: the embedded demo model].")
@click.option(
    "--perturbations",
    default="all",
    show_default=True,
    help="Comma-separated kinds, each optionally kind:param=value;param=value.",
)
@click.option("--top-k", default=5, show_default=True, help="Region links kept per token / step / dW row.")
@click.option("--layers", default="mean", show_default=True, help="Layer aggregation: mean, last, or layer indices.")
@click.option(
    "--prompt",
    default=None,
    help='Prompt around the question, with {question} once [default: the question for T5, "Question: {question} Answer:" for OPT].',
)
@click.option("--batch-size", default=16, show_default=True, help="Examples per model pass (x 7 images each).")
@click.option("--deletion-steps", default=10, show_default=True, help="Deletion-curve steps per example (0: off).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--dtype", default=None, help="float32 | bfloat16 [default: bfloat16 on GPU, float32 on CPU].")
@click.option("--seed", default=0, show_default=True, help="Seed of sampling and perturbations.")
@click.option(
    "--run-name",
    default=None,
    help="Name of the run [default: derived from the arguments, so the same command resumes].",
)
@click.option(
    "--store",
    default="out/store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Root of the dense-array file store.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@neo4j_options
def ingest(
    dataset,
    split,
    limit,
    sample,
    question_type,
    answer_type,
    shard,
    model,
    perturbations,
    top_k,
    layers,
    prompt,
    batch_size,
    deletion_steps,
    device,
    dtype,
    seed,
    run_name,
    store,
    quiet,
    uri,
    username,
    password,
    database,
):
    """Turn a VQA dataset into STCGs in Neo4j (resumable: run the same command again to continue).

    Each example's nodes and links are written with MERGE on stable keys and marked complete
    last; its dense arrays go to the file store. Failed examples are recorded with their reason
    (in Neo4j and in <store>/<run>/failures.jsonl) and the run continues.
    """
    from ingest.pipeline import IngestConfig, run_ingest

    cfg = IngestConfig(
        dataset=dataset,
        split=split,
        limit=limit,
        question_type=question_type,
        answer_type=answer_type,
        sample=sample,
        seed=seed,
        shard=shard,
        model=model,
        device=device,
        dtype=dtype,
        perturbations=perturbations,
        layers=layers,
        prompt=prompt,
        top_k=top_k,
        batch_size=batch_size,
        deletion_steps=deletion_steps,
        run_name=run_name,
        store=store,
    )
    summary = run_ingest(cfg, settings_from(uri, username, password, database), log=click.echo, progress=not quiet)
    click.echo(summary.describe())
    if summary.failures:
        click.echo(f"failures and their reasons: {summary.failure_log}")
