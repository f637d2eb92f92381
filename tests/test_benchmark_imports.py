"""Every name a benchmark imports from the project exists: benchmarks are not run by the test suite, so a
module split would otherwise break them silently (it did: three imported the run statements from their
old module)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("stcg", "stcg_model", "ingest", "queries", "stcg_cli")


def project_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from <project module> import name`` anywhere in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in PROJECT:
                out += [(node.module, a.name) for a in node.names]
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_a_benchmark_imports_only_names_that_exist(path):
    for module, name in project_imports(path):
        mod = importlib.import_module(module)
        assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, (
            f"{path.name}: from {module} import {name}"
        )


def test_the_check_sees_a_missing_name(tmp_path):
    bad = tmp_path / "bench_bad.py"
    bad.write_text("def f():\n    from ingest.pipeline import RUN_MERGE\n")
    assert project_imports(bad) == [("ingest.pipeline", "RUN_MERGE")]
    assert not hasattr(importlib.import_module("ingest.pipeline"), "RUN_MERGE")
