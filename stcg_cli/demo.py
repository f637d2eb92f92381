"""``stcg demo``: the main job on the embedded defaults, end to end.

local Neo4j -> schema -> demo model on easy-VQA test questions (all six perturbations) and the two
scenes models (BLIP-2 and LLaVA) on the same scenes test questions with every attribution method
(ground truth known) -> STCGs in Neo4j and the file store -> every query template -> report.html
(opening with the methods' ranking on known evidence) -> the two families side by side -> what to
open next.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from stcg.config import Neo4jSettings


@click.command("demo")
@click.option("--examples", default=200, show_default=True, help="easy-VQA test questions to ingest (a seeded sample).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/demo",
    show_default=True,
    help="Where report.html, the query results and the file store go.",
)
@click.option(
    "--scenes",
    default=100,
    show_default=True,
    help="Scenes test questions to ingest with every attribution method (0: none): the ranking on known evidence, "
    "with the BLIP-2 and the LLaVA scenes models.",
)
@click.option("--batch-size", default=16, show_default=True, help="Examples per model pass.")
@click.option("--no-server", is_flag=True, help="Do not start the local Neo4j; use NEO4J_URI as it is.")
def demo(examples, out, scenes, batch_size, no_server):
    """Run the whole job on the embedded defaults (local Neo4j, demo model, easy-VQA).

    Ingests a seeded sample of easy-VQA test questions with the shipped demo model and all six
    perturbations, and the first --scenes questions of the scenes testbed (whose evidence is known)
    with both shipped scenes models (BLIP-2, and LLaVA: two model families on the same questions) and
    every attribution method plus the oracle and random references;
    runs every query template (results in <out>/queries/), writes <out>/report.html, which opens
    with the methods' ranking on known evidence, and prints what to open next. Running it again
    resumes / reuses the same runs.
    """
    from ingest.pipeline import IngestConfig, run_ingest
    from queries.library import QueryLibrary, load_template, template_names
    from queries.report import build_report
    from stcg.db import connect
    from stcg.neo4j_runtime import LocalNeo4j
    from stcg_model.engine.core import RESULTS_VERSION
    from stcg_model.families.loading import default_model, embedded, model_fingerprint

    t0 = time.time()
    settings = Neo4jSettings.from_env()
    browser = None
    if not no_server:
        st = LocalNeo4j(password=settings.password).start(log=click.echo)
        browser = f"{st.http_uri}/browser/" if st.http_uri else None
    out_dir = Path(out)
    store = out_dir / "store"
    click.echo(f"[1/4] Neo4j ready: {settings.redacted()}")
    cfg = IngestConfig(
        dataset="easy-vqa",
        split="test",
        sample=examples,
        seed=0,
        batch_size=batch_size,
        store=str(store),
        run_name=f"demo-easy-vqa-{examples}-{model_fingerprint(default_model())[:8]}-r{RESULTS_VERSION}",
    )
    click.echo(f"[2/4] ingesting {examples} easy-VQA test questions with the demo model")
    summary = run_ingest(cfg, settings, log=click.echo)
    click.echo("      " + summary.describe())
    scenes_run = llava_run = None
    if scenes:
        model = default_model("scenes")
        click.echo(f"      and {scenes} scenes test questions with every attribution method (known evidence)")
        scfg = IngestConfig(
            dataset="scenes",
            split="test",
            limit=scenes,
            batch_size=batch_size,
            store=str(store),
            attributions="all",
            run_name=f"demo-scenes-{scenes}-{model_fingerprint(model)[:8]}-r{RESULTS_VERSION}",
        )
        scenes_summary = run_ingest(scfg, settings, log=click.echo)
        click.echo("      " + scenes_summary.describe())
        scenes_run = scenes_summary.run_id
        llava = embedded("scenes-llava")
        if llava != "scenes-llava":  # shipped: the same questions with a second model family
            click.echo(f"      and the same {scenes} questions with the LLaVA-family scenes model")
            lcfg = replace(
                scfg,
                model=llava,
                run_name=f"demo-scenes-llava-{scenes}-{model_fingerprint(llava)[:8]}-r{RESULTS_VERSION}",
            )
            llava_summary = run_ingest(lcfg, settings, log=click.echo)
            click.echo("      " + llava_summary.describe())
            llava_run = llava_summary.run_id
    click.echo("[3/4] running every query template")
    qdir = out_dir / "queries"
    qdir.mkdir(parents=True, exist_ok=True)
    with connect(settings) as driver:
        # every read names the demo's run, so a newer partial run elsewhere never changes what it shows
        lib = QueryLibrary(driver, settings.database, notice=lambda line: click.echo(line, err=True))
        for name in template_names():
            t = load_template(name)
            params = {"run_id": summary.run_id} if any(p.name == "run_id" for p in t.params) else {}
            if scenes_run is not None and name.startswith("method_"):  # the run with every method and masks
                params["run_id"] = scenes_run
            if name == "compare_runs":  # two model families on the same questions, else the run with itself
                params = {"run_a": scenes_run or summary.run_id, "run_b": llava_run or scenes_run or summary.run_id}
            if name == "example_links":
                first = lib.run("flips", run_id=summary.run_id, perturbation="color_shift", limit=1)
                params["example_id"] = first["example_id"].iloc[0] if len(first) else "easy-vqa:test:0"
            df = lib.run(name, **params)
            df.to_csv(qdir / f"{name}.csv", index=False)
            click.echo(f"      {name:<32}{len(df):>5} rows")
        click.echo("[4/4] writing the report")
        report = build_report(lib, summary.run_id, str(store), out_dir / "report.html", ground_truth_run=scenes_run)
        if scenes_run is not None:
            grounding = lib.run("method_grounding", run_id=scenes_run)
            faithful = lib.run("method_faithfulness", run_id=scenes_run).set_index("method")
        families = family_table(lib, scenes_run, llava_run) if llava_run is not None else None
        summary_table = lib.run("perturbation_summary", run_id=summary.run_id)
    click.echo("\nPer perturbation (mean |dW|_F, flip rate, mean dp):")
    click.echo(
        summary_table[["perturbation", "examples", "mean_dW_fro", "flip_rate", "mean_dp"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"
        )
    )
    if scenes_run is not None:
        click.echo(f"\nWhich explanation is faithful? {scenes} scenes questions, evidence known (run {scenes_run}):")
        table = grounding.join(faithful[["deletion_ratio", "insertion_ratio"]], on="method")
        click.echo(
            table[
                ["method", "examples", "deletion_ratio", "insertion_ratio", "mass_accuracy", "pointing_game", "chance"]
            ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )
    if families is not None:
        table, accuracy = families
        click.echo(
            f"\nTwo model families on the same {scenes} scenes questions (BLIP-2: {scenes_run}; LLaVA: {llava_run}):"
        )
        click.echo("exact match: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
        click.echo(table.to_string(float_format=lambda v: f"{v:.3f}"))
    click.echo(f"\nDone in {time.time() - t0:.0f} s. Open:")
    click.echo(f"  report         {report.resolve()}")
    if browser:
        src = settings.password_source()
        how = "your NEO4J_PASSWORD" if src == "NEO4J_PASSWORD" else f"cat {src}"
        click.echo(f"  Neo4j Browser  {browser}  (user {settings.username}, password: {how})")
    click.echo(
        f"  first query    stcg query run flips --param perturbation=color_shift --param run_id={summary.run_id}"
    )
    click.echo(
        "  in Browser     see docs/browser.md: run the :param lines of "
        f"`stcg query show example_graph --param run_id={summary.run_id}`, then paste the query it prints"
    )


def family_table(lib, blip2_run: str, llava_run: str):
    """``(table, exact match per family)``: per method (rows), both families' mass accuracy and deletion
    ratio on the same questions (columns ``<measure> <family>``); the answers' exact match (normalised as
    ``stcg eval`` does) against the ground truth."""
    import pandas as pd

    from stcg_model.maths.text import normalize_answer

    cols, accuracy = {}, {}
    for fam, run in (("BLIP-2", blip2_run), ("LLaVA", llava_run)):
        g = lib.run("method_grounding", run_id=run).set_index("method")
        f = lib.run("method_faithfulness", run_id=run).set_index("method")
        ex = lib.run("run_examples", run_id=run, limit=1_000_000)
        accuracy[fam] = float((ex["answer"].map(normalize_answer) == ex["gt_answer"].map(normalize_answer)).mean())
        cols[f"mass_accuracy {fam}"] = g["mass_accuracy"]
        cols[f"deletion_ratio {fam}"] = f["deletion_ratio"]
    return pd.DataFrame(cols), accuracy
