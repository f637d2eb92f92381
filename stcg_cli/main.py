"""The ``stcg`` command line.

Each sub-command lives with the package that owns the work; this module only wires them up and
turns ``StcgError`` (a user mistake or an unreachable service) into one line on stderr.
"""

from __future__ import annotations

import sys

import click

from stcg import __version__
from stcg.errors import StcgError
from stcg_cli.options import neo4j_options, settings_from


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="stcg")
def cli():
    """Explain BLIP-2 VQA answers as Structured Temporal Counterfactual Graphs in Neo4j.

    \b
    Typical session:
      stcg neo4j start              # a local Neo4j 5.26 on 127.0.0.1 (no Docker needed)
      stcg demo                     # the whole job on the embedded defaults
    Connection settings come from NEO4J_URI / NEO4J_USERNAME / NEO4J_PASSWORD / NEO4J_DATABASE;
    without NEO4J_PASSWORD the local server's generated password (.stcg/neo4j/stcg-password) is used.
    """


# --------------------------------------------------------------------------- neo4j
@cli.group()
def neo4j():
    """Run a local Neo4j 5.26 Community server (jars from Maven Central, Java 17+)."""


def _server_options(f):
    f = click.option("--pagecache", default="512m", show_default=True, help="Page cache size.")(f)
    f = click.option("--heap", default="1g", show_default=True, help="JVM heap size.")(f)
    f = click.option(
        "--http-port", default=7474, show_default=True, type=int, help="HTTP / Neo4j Browser port on 127.0.0.1."
    )(f)
    f = click.option("--bolt-port", default=7687, show_default=True, type=int, help="Bolt port on 127.0.0.1.")(f)
    f = click.option(
        "--cache",
        type=click.Path(file_okay=False),
        default=None,
        help="Where the server jars are cached [env STCG_CACHE_DIR; default ~/.cache/stcg].",
    )(f)
    f = click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Server data, logs and config [env STCG_NEO4J_HOME; default ./.stcg/neo4j].",
    )(f)
    return f


def _server(home, cache, bolt_port, http_port, heap="1g", pagecache="512m"):
    from stcg.neo4j_runtime import LocalNeo4j

    return LocalNeo4j(home=home, cache=cache, bolt_port=bolt_port, http_port=http_port, heap=heap, pagecache=pagecache)


@neo4j.command("start")
@_server_options
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for Bolt to answer.")
def neo4j_start(home, cache, bolt_port, http_port, heap, pagecache, timeout):
    """Start the server (fetching it once) and wait until Bolt answers. Starting twice is harmless.

    A new home gets a random password for user neo4j, kept in <home>/stcg-password (owner-only),
    where every stcg command finds it; with NEO4J_PASSWORD set, the home is created with that one
    instead (and no file is written). A NEO4J_PASSWORD that is not the home's is refused.
    """
    _server(home, cache, bolt_port, http_port, heap, pagecache).start(timeout=timeout, log=click.echo)


@neo4j.command("status")
@_server_options
def neo4j_status(home, cache, bolt_port, http_port, heap, pagecache):
    """Say whether the server runs, and where. Exit code 0 if running, 3 if not."""
    st = _server(home, cache, bolt_port, http_port).status()
    click.echo(st.describe())
    sys.exit(0 if st.running else 3)


@neo4j.command("stop")
@_server_options
def neo4j_stop(home, cache, bolt_port, http_port, heap, pagecache):
    """Stop the server cleanly (no-op if it is not running)."""
    _server(home, cache, bolt_port, http_port).stop(log=click.echo)


# --------------------------------------------------------------------------- db
@cli.command("init-db")
@neo4j_options
def init_db(uri, username, password, database):
    """Create the STCG constraints and indexes (idempotent)."""
    from ingest.schema import ensure_schema
    from stcg.db import connect

    settings = settings_from(uri, username, password, database)
    with connect(settings) as driver:
        names = ensure_schema(driver, settings.database)
    click.echo(f"schema ready on {settings.redacted()}: {len(names)} constraints and indexes")


def _register_optional_commands() -> None:
    """Attach the commands that the other packages own."""
    from stcg_cli.demo import demo
    from stcg_cli.model_commands import eval_cmd, explain, train_demo_cmd, train_scenes_cmd

    cli.add_command(demo)
    cli.add_command(explain)
    cli.add_command(train_demo_cmd)
    cli.add_command(train_scenes_cmd)
    cli.add_command(eval_cmd)
    from stcg_cli.ingest_commands import ingest

    cli.add_command(ingest)
    from stcg_cli.load_commands import load

    cli.add_command(load)
    from stcg_cli.query_commands import metrics, query, report

    cli.add_command(query)
    cli.add_command(metrics)
    cli.add_command(report)
    from stcg_cli.claims_commands import claims

    cli.add_command(claims)


_register_optional_commands()


def _option(argv: list[str], name: str) -> str | None:
    """The value of option ``name`` in ``argv`` (``--name V`` or ``--name=V``), or None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def _offline(e: BaseException) -> bool:
    """Whether ``e`` is Neo4j saying the database is unavailable (offline, or it failed to start)."""
    try:
        from neo4j.exceptions import DatabaseUnavailable, Neo4jError
    except ImportError:  # pragma: no cover - the driver is a dependency
        return False
    return isinstance(e, DatabaseUnavailable) or (
        isinstance(e, Neo4jError) and str(getattr(e, "code", "") or "").endswith(".DatabaseUnavailable")
    )


def unavailable_message(argv: list[str]) -> str:
    """The one line for a database that is unavailable, naming it, its server and what to do."""
    import os
    from pathlib import Path

    from stcg.config import DEFAULT_DATABASE, DEFAULT_URI, local_home

    home = Path(_option(argv, "--home") or local_home()).resolve()
    if argv[:1] == ["load"]:  # `stcg load` works on the local server of --home, database neo4j
        uri, database = f"bolt://127.0.0.1:{_option(argv, '--bolt-port') or 7687}", DEFAULT_DATABASE
    else:
        uri = _option(argv, "--uri") or os.environ.get("NEO4J_URI") or DEFAULT_URI
        database = _option(argv, "--database") or os.environ.get("NEO4J_DATABASE") or DEFAULT_DATABASE
    if (home / "run" / "stcg-load.json").exists():
        where = f" --home {home}" if _option(argv, "--home") else ""
        hint = (
            f"a `stcg load` into {home} was interrupted: `stcg load --finish{where}` completes it, "
            f"`stcg load --undo{where}` puts the database back as it was before it"
        )
    else:
        hint = f"no `stcg load` into {home} was interrupted; the log says why the database is not online"
    return (
        f"database {database!r} on {uri} is unavailable (offline, or it failed to start): see "
        f"{home / 'logs' / 'debug.log'} (for a local server) and `stcg neo4j status`; {hint}"
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cli.main(args=argv, prog_name="stcg", standalone_mode=False)
    except StcgError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        if not _offline(e):
            raise
        click.echo(f"error: {unavailable_message(args)}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
