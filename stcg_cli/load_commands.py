"""``stcg load DIR``: import the files of ``stcg ingest --sink csv:DIR`` into the local Neo4j (docs/bulk.md)."""

from __future__ import annotations

import click


@click.command("load")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="The local server's home [env STCG_NEO4J_HOME; default ./.stcg/neo4j].",
)
@click.option("--cache", type=click.Path(file_okay=False), default=None, help="Where the server jars are cached.")
@click.option("--bolt-port", default=7687, show_default=True, type=int, help="Bolt port of the local server.")
@click.option("--http-port", default=7474, show_default=True, type=int, help="HTTP port of the local server.")
@click.option("--heap", default="1g", show_default=True, help="JVM heap of the restarted server.")
@click.option("--pagecache", default="512m", show_default=True, help="Page cache of the restarted server.")
@click.option("--max-memory", default="2g", show_default=True, help="neo4j-admin's off-heap memory for the import.")
@click.option(
    "--prepare-only",
    is_flag=True,
    help="Only check the folder and write DIR/import.args (for neo4j-admin in a Docker container); touch no server.",
)
def load(folder, home, cache, bolt_port, http_port, heap, pagecache, max_memory, prepare_only):
    """Bulk-load a CSV folder written by `stcg ingest --sink csv:DIR` into the local server.

    \b
    The database must be empty (Community edition has no incremental import: add runs to a
    database that holds data with `stcg ingest`, over Bolt). Steps: check it is empty, stop the
    server, neo4j-admin database import full, start it, create the constraints and indexes,
    compare node and relationship counts with the files.
    """
    from ingest.bulk import load_csv, prepare_import
    from stcg.neo4j_runtime import LocalNeo4j

    if prepare_only:
        plan = prepare_import(folder, log=click.echo)
        click.echo(f"neo4j-admin arguments in {plan['args']} (paths relative to {folder}); see docs/bulk.md")
        return
    server = LocalNeo4j(
        home=home, cache=cache, bolt_port=bolt_port, http_port=http_port, heap=heap, pagecache=pagecache
    )
    load_csv(folder, server, log=click.echo, max_memory=max_memory)
