"""Click options shared by the commands of every package."""

from __future__ import annotations

import click

from stcg.config import Neo4jSettings


def neo4j_options(f):
    """Add the standard connection options (each defaults to its NEO4J_* variable)."""
    f = click.option(
        "--database", envvar="NEO4J_DATABASE", default=None, help="Database name [env NEO4J_DATABASE; default neo4j]."
    )(f)
    f = click.option(
        "--password",
        envvar="NEO4J_PASSWORD",
        default=None,
        help="Password [env NEO4J_PASSWORD; default: the local server's <home>/stcg-password].",
    )(f)
    f = click.option(
        "--username", envvar="NEO4J_USERNAME", default=None, help="User [env NEO4J_USERNAME; default neo4j]."
    )(f)
    f = click.option(
        "--uri", envvar="NEO4J_URI", default=None, help="Bolt URI [env NEO4J_URI; default bolt://127.0.0.1:7687]."
    )(f)
    return f


def settings_from(uri, username, password, database) -> Neo4jSettings:
    return Neo4jSettings.from_env(uri=uri, username=username, password=password, database=database)
