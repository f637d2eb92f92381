"""``stcg query ...``, ``stcg metrics`` and ``stcg report``."""

from __future__ import annotations

from pathlib import Path

import click

from stcg_cli.options import neo4j_options, settings_from

_param_option = click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A template parameter (repeatable)."
)


def echo_error(line: str) -> None:
    click.echo(line, err=True)


def _values(params) -> dict:
    from stcg.errors import StcgError

    values = {}
    for p in params:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            raise StcgError(f"--param {p!r}: use key=value")
        values[key.strip()] = value
    return values


def open_library(uri, username, password, database, run_hint: str, timeout: float = 10.0):
    """A QueryLibrary on the connection the options describe; notices go to stderr."""
    from queries.library import QueryLibrary

    settings = settings_from(uri, username, password, database)
    return QueryLibrary(settings=settings, notice=echo_error, run_hint=run_hint, timeout=timeout)


@click.group("query")
def query():
    """The Cypher template library: list, describe, show and run the cross-example questions.

    \b
    stcg query list                         the questions (templates)
    stcg query describe NAME                parameters, then what to paste into Neo4j Browser
    stcg query show NAME > q.txt            only the paste-ready text (:param lines, then the query)
    stcg query run NAME -p key=value        the answer as a table (or --format csv/json)
    """


@query.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also the internal templates the package itself uses.")
def query_list(show_all):
    """List the templates and the question each answers."""
    from queries.library import load_template, template_names

    for name in template_names(internal=show_all):
        t = load_template(name)
        click.echo(f"{name:<32}{t.question}" + ("  [internal]" if t.internal else ""))


def _describe_or_show(name, params, uri, username, password, database, browser_only: bool) -> None:
    from queries.library import describe_template, load_template
    from stcg.errors import StcgError

    t = load_template(name)  # unknown template: clear error before connecting
    values = _values(params)
    t.bind_partial(**values)  # bad values: refused before connecting
    try:
        lib = open_library(uri, username, password, database, run_hint="--param run_id={run}", timeout=3.0)
    except StcgError as e:
        lib, reason = None, str(e)
    if lib is not None:
        with lib:
            values, missing = lib.sample_values(name, **values)
    else:
        values = t.bind_partial(**values)
        missing = [p.name for p in t.params if p.required and p.name not in values]
    note = None
    if missing:
        why = "no database reachable" if lib is None else "the database has no value for it"
        note = f"{', '.join(missing)}: placeholder ({why}), replace it before running"
        if "example_id" in missing:
            note += "; example ids: stcg query run run_examples"
    if browser_only:
        if note:
            echo_error(f"note: {note}" + (f" [{reason}]" if lib is None else ""))
        click.echo(t.browser_text(values).rstrip())
    else:
        click.echo(describe_template(name, values, note))


@query.command("describe")
@click.argument("name")
@_param_option
@click.option("--browser", "browser_only", is_flag=True, help="Print only the paste-ready text (as `query show`).")
@neo4j_options
def query_describe(name, params, browser_only, uri, username, password, database):
    """Show a template's question and parameters, then the text to paste into Neo4j Browser.

    The paste-ready text is the :param lines (one per parameter, each ending in ';') followed by the
    query with its fragments expanded; paste it whole into Browser's editor and run it. Required
    parameters get a real value from the database (an example id of the default run, a run id), or
    a "<name>" placeholder when the database cannot be reached. --param key=value sets a value.
    """
    _describe_or_show(name, params, uri, username, password, database, browser_only)


@query.command("show")
@click.argument("name")
@_param_option
@neo4j_options
def query_show(name, params, uri, username, password, database):
    """Print only the paste-ready text of a template for Neo4j Browser: :param lines, then the query.

    Copy everything it prints into Browser's editor and run it (Browser runs the ';'-separated
    :param commands, then the query). --param key=value sets a value; required parameters without one
    get a real value from the database, or a "<name>" placeholder (noted on stderr).
    """
    _describe_or_show(name, params, uri, username, password, database, True)


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
@_param_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@neo4j_options
def query_run(name, params, fmt, uri, username, password, database):
    """Run template NAME with --param key=value ... and print the rows.

    Values are checked against the template's types, ranges and choices (`stcg query describe NAME`)
    before the query runs. Without --param run_id=..., templates read the latest complete run.
    """
    from queries.library import load_template

    t = load_template(name)  # unknown template: clear error before connecting
    values = _values(params)
    t.bind(**values)  # bad values: refused before connecting
    with open_library(uri, username, password, database, run_hint="--param run_id={run}") as lib:
        df = lib.run(name, **values)
    click.echo(_format(df, fmt).rstrip())


run_option = click.option("--run", "run", default=None, help="Run id or name [default: the latest complete run].")
store_option = click.option(
    "--store",
    default=None,
    type=click.Path(file_okay=False),
    help="File store root of the run [default: the one the run recorded at ingestion; out/store for older runs].",
)


@click.command("metrics")
@run_option
@store_option
@click.option(
    "--bootstrap", "n_boot", default=1000, show_default=True, help="Bootstrap resamples for the 95% BCa intervals."
)
@click.option("--by-question-type/--overall-only", default=True, show_default=True)
@click.option(
    "--by-method",
    is_flag=True,
    help="One block per attribution method the run holds (ingested with --attributions): deletion and "
    "insertion ratios to a random order, comprehensiveness, sufficiency, causal faithfulness, stability; "
    "on a dataset with ground-truth masks (scenes) also mass accuracy, rank accuracy, pointing game and "
    "their chance level.",
)
@click.option(
    "--by-mask-kind",
    is_flag=True,
    help="Also one group per mask kind of the examples with a ground-truth mask (mask:single, mask:union, mask:all).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@neo4j_options
def metrics(run, store, n_boot, by_question_type, by_method, by_mask_kind, fmt, uri, username, password, database):
    """Causal faithfulness, deletion faithfulness and Jaccard stability of a run, with 95% intervals.

    Reads the stored arrays of the run's complete examples (no model re-run) from the file store the
    run recorded (--store overrides it). Intervals: scipy.stats.bootstrap, BCa, resampling examples;
    NaN when degenerate (fewer than 3 examples, or every resample equal). With --by-method on a run
    whose examples have ground-truth masks, the ground-truth metrics (mass_accuracy, rank_accuracy,
    pointing_game, chance) follow each method's protocol metrics, over the examples with a mask.
    """
    from queries.metrics import interval_label, load_run_graphs, metrics_table
    from stcg.errors import StcgError

    if n_boot < 1:
        raise StcgError("--bootstrap must be >= 1")
    with open_library(uri, username, password, database, run_hint="--run {run}") as lib:
        info = lib.resolve_run(run)
        graphs, qtypes = load_run_graphs(lib, info, store, "--store")
    if not graphs:
        raise StcgError(f"run {info['run_id']} has no complete examples")
    df = metrics_table(
        graphs,
        qtypes,
        n_boot=n_boot,
        by_question_type=by_question_type,
        by_method=by_method,
        by_mask_kind=by_mask_kind,
    )
    head = f"run {info['run_id']}: {len(graphs)} examples; {interval_label(n_boot)}"
    if by_method and set(df["method"]) == {"attention"}:
        head += "; only attention is stored (ingest with --attributions all to compare methods)"
    masked = sum(g.gt is not None for g in graphs)
    if by_method and masked:
        head += (
            f"; ground truth (mass_accuracy, rank_accuracy, pointing_game vs chance) over {masked} examples with a mask"
        )
    if fmt == "table":
        click.echo(head)
    else:
        echo_error(head)  # keep csv / json parseable
    click.echo(_format(df, fmt).rstrip())


@click.command("report")
@run_option
@click.option(
    "--out",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="HTML file to write; missing parent folders are created (and named in the output).",
)
@store_option
@click.option("--examples", default=4, show_default=True, help="Examples shown with heatmaps on their images.")
@click.option(
    "--bootstrap", "n_boot", default=500, show_default=True, help="Bootstrap resamples for the metric intervals."
)
@neo4j_options
def report(run, out, store, examples, n_boot, uri, username, password, database):
    """Write one self-contained HTML report of a run (tables, plots, metrics, example heatmaps; works offline).

    The arrays come from the file store the run recorded (--store overrides it). If the folder of
    --out does not exist it is created, and the output says "created folder ...".
    """
    from queries.report import build_report
    from stcg.errors import StcgError

    if n_boot < 1:
        raise StcgError("--bootstrap must be >= 1")
    parent = Path(out).expanduser().resolve().parent
    nearest = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if nearest is not None and not nearest.is_dir():
        raise StcgError(f"--out {out}: {nearest} is a file, not a folder")
    existed = parent.is_dir()
    with open_library(uri, username, password, database, run_hint="--run {run}") as lib:
        info = lib.resolve_run(run)
        try:
            path = build_report(lib, info["run_id"], store, out, examples=examples, n_boot=n_boot, option="--store")
        except OSError as e:
            raise StcgError(f"cannot write --out {out}: {e.strerror or e}") from None
    if not existed:
        click.echo(f"created folder {parent}")
    click.echo(f"wrote {path}")
