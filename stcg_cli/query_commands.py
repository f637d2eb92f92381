"""``stcg query ...`` and ``stcg metrics``."""

from __future__ import annotations

import click

from stcg_cli.options import neo4j_options, settings_from


@click.group("query")
def query():
    """The Cypher template library: list, describe and run the cross-example questions."""


@query.command("list")
def query_list():
    """List the templates and the question each answers."""
    from queries.library import load_template, template_names

    for name in template_names():
        t = load_template(name)
        click.echo(f"{name:<32}{t.question}")


@query.command("describe")
@click.argument("name")
def query_describe(name):
    """Show a template's parameters, its :param lines for Neo4j Browser, and its Cypher."""
    from queries.library import describe_template

    click.echo(describe_template(name))


def _format(df, fmt: str) -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=1, default_handler=str)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", 500, "display.max_columns", 50, "display.width", 200, "display.max_colwidth", 60
    ):
        return df.to_string(index=False) if len(df) else "(no rows)"


@query.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A template parameter (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@neo4j_options
def query_run(name, params, fmt, uri, username, password, database):
    """Run template NAME with --param key=value ... and print the rows."""
    from queries.library import QueryLibrary, load_template
    from stcg.errors import StcgError

    load_template(name)  # unknown template: clear error before connecting
    values = {}
    for p in params:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            raise StcgError(f"--param {p!r}: use key=value")
        values[key.strip()] = value
    with QueryLibrary(
        settings_from(uri, username, password, database).uri if uri else None,
        database=database,
        auth=(username, password) if username and password else None,
    ) as lib:
        df = lib.run(name, **values)
    click.echo(_format(df, fmt).rstrip())


@click.command("metrics")
@click.option("--run", "run", default=None, help="Run id or name [default: the latest complete run].")
@click.option(
    "--store",
    default="out/store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="File store root of the run.",
)
@click.option(
    "--bootstrap", "n_boot", default=1000, show_default=True, help="Bootstrap resamples for the 95% intervals."
)
@click.option("--by-question-type/--overall-only", default=True, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@neo4j_options
def metrics(run, store, n_boot, by_question_type, fmt, uri, username, password, database):
    """Causal faithfulness, deletion faithfulness and Jaccard stability of a run, with bootstrap 95% intervals.

    Reads the stored arrays of the run's complete examples (no model re-run).
    """
    from queries.metrics import load_run_graphs, metrics_table, resolve_run
    from stcg.db import connect

    settings = settings_from(uri, username, password, database)
    with connect(settings) as driver:
        run_id = resolve_run(driver, run, settings.database)
        graphs, qtypes = load_run_graphs(driver, run_id, store, settings.database)
    if not graphs:
        from stcg.errors import StcgError

        raise StcgError(f"run {run_id} has no complete examples")
    df = metrics_table(graphs, qtypes, n_boot=n_boot, by_question_type=by_question_type)
    click.echo(f"run {run_id}: {len(graphs)} examples")
    click.echo(_format(df, fmt).rstrip())


@click.command("report")
@click.option("--run", "run", default=None, help="Run id or name [default: the latest complete run].")
@click.option(
    "--out", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write."
)
@click.option(
    "--store",
    default="out/store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="File store root of the run.",
)
@click.option("--examples", default=4, show_default=True, help="Examples shown with heatmaps on their images.")
@click.option(
    "--bootstrap", "n_boot", default=500, show_default=True, help="Bootstrap resamples for the metric intervals."
)
@neo4j_options
def report(run, out, store, examples, n_boot, uri, username, password, database):
    """Write one self-contained HTML report of a run (tables, plots, metrics, example heatmaps; works offline)."""
    from queries.library import QueryLibrary
    from queries.metrics import resolve_run
    from queries.report import build_report
    from stcg.db import connect

    settings = settings_from(uri, username, password, database)
    with connect(settings) as driver:
        run_id = resolve_run(driver, run, settings.database)
        path = build_report(
            QueryLibrary(driver, settings.database), run_id, store, out, examples=examples, n_boot=n_boot
        )
    click.echo(f"wrote {path}")
