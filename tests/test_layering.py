"""Dependencies point one way: ground -> stcg_model -> ingest -> queries -> the command line.

Read from the import statements of every module (top-level and function-local imports alike),
so a lazy import inside a function cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["stcg", "stcg_model", "ingest", "queries", "stcg_cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in the module at ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in RANK)
    return found


def upward_imports() -> list[str]:
    bad = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in project_imports(path):
                if RANK[target] > RANK[package]:
                    bad.append(f"{path.relative_to(ROOT)} imports {target}")
    return bad


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_check_sees_lazy_upward_imports(tmp_path):
    # the checker itself must catch an import hidden inside a function
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from queries.library import QueryLibrary\n    import ingest.rows\n")
    assert project_imports(mod) == {"queries", "ingest"}


def test_named_rules_of_the_issue():
    for path in (ROOT / "stcg_model").rglob("*.py"):
        assert not project_imports(path) & {"ingest", "queries", "stcg_cli"}, path
    for path in (ROOT / "queries").rglob("*.py"):
        assert "ingest" not in project_imports(path), path
    for path in (ROOT / "stcg").rglob("*.py"):
        assert project_imports(path) <= {"stcg"}, path


def private_imports(path: Path) -> list[str]:
    """``from <project module> import _name`` statements in the module at ``path`` (top-level and local):
    a private name is private to its module, so another module reaching for it needs it made public."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in RANK:
            found += [
                f"from {node.module} import {a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{path.relative_to(ROOT)}: {line}"
        for package in LAYERS
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in private_imports(path)
    ]
    assert bad == []


def test_the_check_sees_a_planted_private_import(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from stcg_model.capture import _hidden, public\nfrom stcg import __version__\n")
    assert private_imports(mod) == ["from stcg_model.capture import _hidden"]
