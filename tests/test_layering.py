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
    mod.write_text(
        "def f():\n    from stcg_model.families.capture import _hidden, public\nfrom stcg import __version__\n"
    )
    assert private_imports(mod) == ["from stcg_model.families.capture import _hidden"]


def import_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """Module -> the modules of the same top-level package it imports (anywhere in its body).

    ``from pkg import sub`` points at the submodule ``pkg.sub`` when there is one, else at ``pkg``."""
    mods = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [owner(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [owner(f"{node.module}.{a.name}") for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t and t != m and t.split(".")[0] == m.split(".")[0]}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# No cycle is left: the last one (ingest.pipeline picking the Ray driver, which called pipeline's batch
# steps) went with the ingest split into config, lifecycle, steps and drivers/.
KNOWN_CYCLES: list[set[str]] = []


def test_no_import_cycle_inside_a_package():
    assert sorted(map(sorted, cycles(import_graph(ROOT, LAYERS)))) == sorted(map(sorted, KNOWN_CYCLES))


def test_ingest_drivers_never_import_each_other_or_the_entry_point():
    """The drivers share ``ingest.lifecycle`` and ``ingest.steps``; only ``ingest.pipeline`` picks one, and
    a driver's own helpers (``ray_stages``, what Ray's workers run) serve that driver alone."""
    graph = import_graph(ROOT, ["ingest"])
    drivers = {"ingest.drivers.threads", "ingest.drivers.ray_data"}
    folder = {m for m in graph if m.startswith("ingest.drivers")}
    assert drivers <= folder
    for d in drivers:
        assert not graph[d] & ((drivers - {d}) | {"ingest.pipeline"}), (d, graph[d])
    assert {m for m in graph if drivers & graph[m]} == {"ingest.pipeline"}
    assert {m for m in graph if "ingest.drivers.ray_stages" in graph[m]} == {"ingest.drivers.ray_data"}


def test_the_check_sees_a_planted_cycle(tmp_path):
    pkg = tmp_path / "stcg_model"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from stcg_model.sub import a\n")  # a package importing its child
    (pkg / "sub" / "a.py").write_text("import numpy\nfrom stcg_model import b\n")
    (pkg / "b.py").write_text("def f():\n    from stcg_model.sub.a import g\n")  # lazy: still an edge
    (pkg / "c.py").write_text("from stcg_model.sub import a\n")  # no cycle through the package itself
    graph = import_graph(tmp_path, ["stcg_model"])
    assert graph["stcg_model.sub"] == {"stcg_model.sub.a"} and graph["stcg_model.c"] == {"stcg_model.sub.a"}
    assert cycles(graph) == [{"stcg_model.sub.a", "stcg_model.b"}]


# Floors inside stcg_model, lowest first: a module may import its own floor and the floors below it.
# ``graph`` is the data contract everything reads; ``testing`` holds fixtures and may import anything.
FLOORS = [
    "graph",
    "maths",
    "families",
    "perturbations",
    "attribution",
    "engine",
    "statistics",
    "plots",
    "training",
    "testing",
]
FLOOR = {name: i for i, name in enumerate(FLOORS)}
NO_TORCH_FLOORS = ("graph", "maths", "statistics", "plots")


def floor_of(module: str) -> str | None:
    """The floor of a dotted ``stcg_model`` module name (``stcg_model.maths.regions`` -> ``maths``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "stcg_model" and parts[1] in FLOOR else None


def floor_violations(root: Path) -> list[str]:
    bad = []
    for m, targets in import_graph(root, ["stcg_model"]).items():
        here = floor_of(m)
        for t in targets:
            there = floor_of(t)
            if here is not None and there is not None and FLOOR[there] > FLOOR[here]:
                bad.append(f"{m} ({here}) imports {t} ({there})")
    return sorted(bad)


def imports_of(path: Path) -> set[str]:
    """Top-level names of every package the module at ``path`` imports (``torch``, ``numpy``, ...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def torch_in_pure_floors(root: Path) -> list[str]:
    heavy = {"torch", "transformers", "tokenizers"}
    bad = []
    for floor in NO_TORCH_FLOORS:
        paths = [root / "stcg_model" / f"{floor}.py", *(root / "stcg_model" / floor).rglob("*.py")]
        bad += [f"{p.relative_to(root)}" for p in paths if p.is_file() and imports_of(p) & heavy]
    return sorted(bad)


def test_every_stcg_model_module_sits_on_a_floor():
    mods = import_graph(ROOT, ["stcg_model"])
    assert sorted(m for m in mods if m != "stcg_model" and floor_of(m) is None) == []


def test_no_module_imports_a_higher_floor():
    assert floor_violations(ROOT) == []


def test_no_torch_in_the_maths_statistics_and_plot_floors():
    assert torch_in_pure_floors(ROOT) == []


def test_the_floor_checks_see_planted_violations(tmp_path):
    pkg = tmp_path / "stcg_model"
    for sub in ("maths", "statistics", "engine"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "graph.py").write_text("import numpy\n")
    (pkg / "engine" / "core.py").write_text("import torch\nfrom stcg_model.maths import regions\n")  # down: fine
    (pkg / "maths" / "regions.py").write_text("def f():\n    from stcg_model.engine.core import run\n")  # up
    (pkg / "statistics" / "metrics.py").write_text("def f():\n    import torch.nn\n")  # torch, lazily
    assert floor_violations(tmp_path) == ["stcg_model.maths.regions (maths) imports stcg_model.engine.core (engine)"]
    assert torch_in_pure_floors(tmp_path) == ["stcg_model/statistics/metrics.py"]
