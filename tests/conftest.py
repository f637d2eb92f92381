"""Shared fixtures: the REAL Neo4j server (from NEO4J_* variables) and per-test isolation.

Tests never skip when Neo4j is down: they fail with a message that says how to start it.

Markers are applied at collection from what a test uses, never written by hand:

- ``neo4j``: the test needs a server (``driver`` or ``neo4j_settings`` among its fixtures, directly
  or through other fixtures, or its source starts or reaches one: ``NEO4J_CALLS``);
- ``model``: the test builds, trains or loads a BLIP-2 model, or runs a command that does
  (``MODEL_CALLS``).

"Its source" is the test's, its fixtures' and the test-suite helpers' they call, three calls deep.

``pytest -m "not neo4j and not model"`` runs the fast rest; CI runs everything.
"""

from __future__ import annotations

import inspect
import re
import uuid

import pytest

from stcg.config import Neo4jSettings
from stcg.errors import StcgError

NEO4J_FIXTURES = {"driver", "neo4j_settings"}
NEO4J_CALLS = re.compile(
    r"\b(GraphDatabase|load_csv|bolt://)|\"neo4j\", \"(start|stop|status)\"|"
    r"\"(claims|metrics|query|report|init-db|load|ingest|demo)\""  # commands that reach the server
)
MODEL_CALLS = re.compile(
    r"\b(tiny_blip2|load_model|from_pretrained|train_demo|train_scenes|STCGEngine|ingest_fixture_run|"
    r"run_ingest|default_model)\b|\"(explain|ingest|eval|demo)\""
)
CALL = re.compile(r"\b([A-Za-z_]\w*)\(")


def _sources(func, depth: int = 3, seen: set | None = None) -> list[str]:
    """The source of ``func`` and of the test-suite functions it calls (``depth`` levels): a helper such
    as ``_stcg(...)`` that starts a server or a model counts for the test that calls it."""
    seen = set() if seen is None else seen
    if func in seen:
        return []
    seen.add(func)
    try:
        src = inspect.getsource(func)
    except (OSError, TypeError):
        return []
    out = [src]
    if depth > 0:
        for name in set(CALL.findall(src)):
            target = getattr(func, "__globals__", {}).get(name)
            if inspect.isfunction(target) and target.__module__.split(".")[0] in ("tests", "conftest"):
                out += _sources(target, depth - 1, seen)
            elif inspect.isfunction(target) and target.__module__.startswith("test_"):
                out += _sources(target, depth - 1, seen)
    return out


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        defs = getattr(item, "_fixtureinfo", None)
        funcs = [item.function] if hasattr(item, "function") else []
        if defs is not None:
            funcs += [d.func for name in names for d in defs.name2fixturedefs.get(name, ())]
        text = "\n".join(src for f in funcs for src in _sources(f))
        if names & NEO4J_FIXTURES or NEO4J_CALLS.search(text):
            item.add_marker(pytest.mark.neo4j)
        if MODEL_CALLS.search(text):
            item.add_marker(pytest.mark.model)


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
    from stcg_model.testing.tiny import tiny_blip2

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
