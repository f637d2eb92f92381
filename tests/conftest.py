"""Shared fixtures: the REAL Neo4j server (from NEO4J_* variables) and per-test isolation.

Tests never skip when Neo4j is down: they fail with a message that says how to start it.
"""
from __future__ import annotations

import uuid

import pytest

from stcg.config import Neo4jSettings
from stcg.errors import StcgError


@pytest.fixture(scope="session")
def neo4j_settings() -> Neo4jSettings:
    return Neo4jSettings.from_env()


@pytest.fixture(scope="session")
def driver(neo4j_settings):
    from stcg.db import connect

    try:
        drv = connect(neo4j_settings)
    except StcgError as e:
        pytest.fail(f"the tests need a running Neo4j ({e}). Run `stcg neo4j start` first.", pytrace=False)
    yield drv
    drv.close()


@pytest.fixture
def run_id(driver, neo4j_settings):
    """A unique run id; every node carrying it (``run_id`` property) is deleted after the test."""
    rid = f"test-{uuid.uuid4().hex[:12]}"
    yield rid
    with driver.session(database=neo4j_settings.database) as s:
        s.run(
            "MATCH (n) WHERE n.run_id = $rid CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
            rid=rid,
        ).consume()
