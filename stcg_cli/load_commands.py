"""``stcg load DIR``: import the files of ``stcg ingest --sink csv:DIR`` into the local Neo4j (docs/bulk.md)."""

from __future__ import annotations

import click

from stcg.errors import StcgError


@click.command("load")
@click.argument("folder", required=False, type=click.Path(file_okay=False))
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
@click.option(
    "--finish",
    is_flag=True,
    help="Finish an interrupted load whose import had completed: start the server, create the schema, check "
    "the counts, write the statistics.",
)
@click.option(
    "--undo",
    is_flag=True,
    help="Undo an interrupted load: put the database back as it was before it.",
)
def load(folder, home, cache, bolt_port, http_port, heap, pagecache, max_memory, prepare_only, finish, undo):
    """Bulk-load a CSV folder written by `stcg ingest --sink csv:DIR` into the local server.

    \b
    The database must be empty (Community edition has no incremental import: add runs to a
    database that holds data with `stcg ingest`, over Bolt). Steps: check the folder (anything
    `stcg ingest` would not write is refused), check the database is empty, stop the server, move
    the database's store folders aside, neo4j-admin database import full, start the server, create
    the constraints and indexes, compare node and relationship counts with the files, write the
    statistics, drop the aside folders. If a step fails, the database is put back as it was.

    \b
    One load per server home at a time (a second one is refused). A load that was killed leaves
    <home>/run/stcg-load.json; the next `stcg load` says what happened, and:
      stcg load --finish    finishes it (only if its import had completed)
      stcg load --undo      puts the database back as it was before it
    """
    from ingest.bulk import finish_load, load_csv, prepare_import, undo_load
    from stcg.neo4j_runtime import LocalNeo4j

    if finish and undo:
        raise StcgError("--finish and --undo exclude each other: finish the interrupted load, or undo it")
    if prepare_only and (finish or undo):
        raise StcgError("--prepare-only touches no server: it cannot --finish or --undo a load")
    if folder is None and not (finish or undo):
        raise StcgError("which CSV folder? `stcg load DIR` (DIR: written by `stcg ingest --sink csv:DIR`)")
    if prepare_only:
        plan = prepare_import(folder, log=click.echo)
        click.echo(f"neo4j-admin arguments in {plan['args']} (paths relative to {folder}); see docs/bulk.md")
        return
    server = LocalNeo4j(
        home=home, cache=cache, bolt_port=bolt_port, http_port=http_port, heap=heap, pagecache=pagecache
    )
    if finish:
        finish_load(server, folder, log=click.echo)
    elif undo:
        undo_load(server, folder, log=click.echo)
    else:
        load_csv(folder, server, log=click.echo, max_memory=max_memory)
