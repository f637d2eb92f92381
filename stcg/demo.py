"""``stcg demo``: the main job on the embedded defaults, end to end.

local Neo4j -> schema -> demo model on easy-VQA -> STCGs -> Neo4j -> query library -> report.
Steps whose packages are not built yet say so and are skipped; everything that exists runs.
"""
from __future__ import annotations

import click

from stcg.config import Neo4jSettings


@click.command("demo")
@click.option("--examples", default=200, show_default=True, help="easy-VQA test examples to ingest.")
@click.option("--out", type=click.Path(file_okay=False), default="out/demo", show_default=True, help="Where the report and file store go.")
@click.option("--no-server", is_flag=True, help="Do not start the local Neo4j; use NEO4J_URI as it is.")
def demo(examples, out, no_server):
    """Run the whole job on the embedded defaults (local Neo4j, demo model, easy-VQA)."""
    from ingest.schema import ensure_schema
    from stcg.db import connect
    from stcg.neo4j_runtime import LocalNeo4j

    settings = Neo4jSettings.from_env()
    if not no_server:
        LocalNeo4j(password=settings.password).start(log=click.echo)
    with connect(settings) as driver:
        ensure_schema(driver, settings.database)
    click.echo(f"[1/4] Neo4j ready: {settings.redacted()}")
    for step, what in ((2, "ingest easy-VQA with the demo model"), (3, "run the query library"), (4, "write report.html")):
        click.echo(f"[{step}/4] {what}: not yet available in this version")
