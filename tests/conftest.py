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


TINY_SEED = 11


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A tiny random BLIP-2 (T5) saved with save_pretrained, loaded by path like any checkpoint."""
    from stcg_model.tiny import tiny_blip2

    d = tmp_path_factory.mktemp("tiny-ckpt")
    lm = tiny_blip2("t5", seed=TINY_SEED)
    lm.model.save_pretrained(d)
    lm.processor.save_pretrained(d)
    return str(d)


def ingest_fixture_run(folder, checkpoint: str, run_id: str, store, **kw):
    """Ingest a VQA-v2-format fixture folder with a checkpoint into the real Neo4j (quietly)."""
    from ingest.pipeline import IngestConfig, run_ingest

    cfg = IngestConfig(
        dataset=f"vqa-v2:{folder}", model=checkpoint, device="cpu", run_name=run_id, store=str(store), **kw
    )
    return run_ingest(cfg, progress=False, log=lambda s: None)
