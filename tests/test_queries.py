"""Every template against an independent numpy/pandas computation over the same STCGs, on the real Neo4j."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from ingest.pipeline import RUN_FINISH, RUN_MERGE
from ingest.rows import GraphRows, graph_rows
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter
from queries.library import QueryLibrary, load_template, template_names
from stcg.errors import StcgError
from stcg_model.synthetic import synthetic_graph

K = 5  # top-k used when writing


def _write_run(driver, run_id, graphs):
    w = Neo4jWriter(driver)
    w.run_query(RUN_MERGE, run_id=run_id, props={"name": run_id, "model": "synthetic", "dataset": "synthetic"})
    rows = GraphRows()
    for g in graphs:
        rows.extend(graph_rows(g, run_id, K))
    w.write(rows)
    w.run_query(RUN_FINISH, run_id=run_id, finished=True)


@pytest.fixture(scope="module")
def world(driver):
    ensure_schema(driver)
    tag = uuid.uuid4().hex[:8]
    a, b = f"test-q-a-{tag}", f"test-q-b-{tag}"
    rng = np.random.default_rng(42)
    ga = [synthetic_graph(f"ex{i:03d}", rng) for i in range(40)]
    gb = [synthetic_graph(f"ex{i:03d}", rng) for i in range(25)]
    _write_run(driver, b, gb)
    _write_run(driver, a, ga)  # finished last: the default run
    yield {"a": a, "b": b, "ga": ga, "gb": gb, "lib": QueryLibrary(driver)}
    with driver.session() as s:
        for rid in (a, b):
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid).consume()


def _pairs(graphs):
    return pd.DataFrame(
        [
            {
                "example": g.example_id,
                "qtype": g.meta["question_type"],
                "kind": k,
                "dW": float(g.dW_fro[j]),
                "dp": float(g.dp[j]),
                "changed": bool(g.answer_changed[j]),
            }
            for g in graphs
            for j, k in enumerate(g.perturbations)
        ]
    )


def test_every_template_has_a_header_and_runs(world):
    lib = world["lib"]
    assert set(template_names()) >= {
        "perturbation_summary",
        "token_localisation",
        "dissociation",
        "question_type_regions",
        "temporal_drift",
        "flips",
        "faithfulness_by_question_type",
        "example_graph",
    }
    for name in template_names():
        t = load_template(name)
        assert t.question and t.cypher.startswith("// name: " + name)
        required = {p.name: world["a"] for p in t.params if p.required}
        if name == "example_links":
            required = {"example_id": "ex000", "run_id": world["a"]}
        assert isinstance(lib.run(name, **required), pd.DataFrame)


def test_perturbation_summary(world):
    got = world["lib"].run("perturbation_summary").set_index("perturbation")  # default: latest complete run = a
    exp = (
        _pairs(world["ga"])
        .groupby("kind")
        .agg(examples=("dW", "size"), mean_dW_fro=("dW", "mean"), flip_rate=("changed", "mean"), mean_dp=("dp", "mean"))
    )
    assert set(got.index) == set(exp.index)
    for k in exp.index:
        assert got.loc[k, "examples"] == exp.loc[k, "examples"]
        for col in ("mean_dW_fro", "flip_rate", "mean_dp"):
            assert got.loc[k, col] == pytest.approx(exp.loc[k, col], rel=1e-5, abs=1e-7)


def test_token_localisation_by_kind_and_word(world):
    lib, graphs = world["lib"], world["ga"]
    rows = []
    for g in graphs:
        for i in range(len(g.tokens)):
            p = g.W[i].astype(np.float64)
            ent = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
            rows.append(
                {
                    "kind": g.word_kinds[g.token_word[i]],
                    "word": g.words[g.token_word[i]].lower(),
                    "entropy": ent,
                    "mass": float(np.sort(p)[::-1][:K].sum()),
                }
            )
    df = pd.DataFrame(rows)
    got = lib.run("token_localisation", run_id=world["a"], group_by="kind", min_count=1).set_index("group")
    exp = df.groupby("kind").agg(tokens=("entropy", "size"), e=("entropy", "mean"), m=("mass", "mean"))
    for kind in exp.index:
        assert got.loc[kind, "tokens"] == exp.loc[kind, "tokens"]
        assert got.loc[kind, "mean_entropy_bits"] == pytest.approx(exp.loc[kind, "e"], rel=1e-4)
        assert got.loc[kind, "mean_top_k_mass"] == pytest.approx(exp.loc[kind, "m"], rel=1e-4)
    assert list(got["mean_entropy_bits"]) == sorted(got["mean_entropy_bits"])
    words = lib.run("token_localisation", run_id=world["a"], group_by="word", min_count=10)
    expw = df.groupby("word").size()
    assert set(words["group"]) == set(expw[expw >= 10].index)


def test_dissociation(world):
    got = world["lib"].run("dissociation", run_id=world["a"], quantile=0.75).set_index("perturbation")
    df = _pairs(world["ga"])
    thr = np.percentile(df["dW"], 75)
    assert got["large_dW_threshold"].iloc[0] == pytest.approx(thr, rel=1e-5)
    for k, sub in df.groupby("kind"):
        big = sub["dW"] > thr
        assert got.loc[k, "large_dW"] == big.sum()
        assert got.loc[k, "large_dW_answer_kept"] == (big & ~sub["changed"]).sum()
        assert got.loc[k, "large_dW_answer_changed"] == (big & sub["changed"]).sum()


def test_question_type_regions(world):
    got = world["lib"].run("question_type_regions", run_id=world["a"], question_type="what color", per_perturbation=3)
    acc = {}
    for g in world["ga"]:
        if not g.meta["question_type"].startswith("what color"):
            continue
        for j, kind in enumerate(g.perturbations):
            region_abs = np.abs(g.dW[j]).sum(0)
            for p in np.argsort(-region_abs, kind="stable")[:K]:
                key = (kind, int(p) // g.grid, int(p) % g.grid)
                acc[key] = acc.get(key, 0.0) + float(region_abs[p])
    for kind, sub in got.groupby("perturbation"):
        exp = sorted(((v, r, c) for (k, r, c), v in acc.items() if k == kind), reverse=True)[:3]
        assert list(sub["total_abs_dW"]) == pytest.approx([v for v, _, _ in exp], rel=1e-5)
        assert list(sub["rank"]) == [1, 2, 3]


def test_temporal_drift(world):
    got = world["lib"].run("temporal_drift", run_id=world["a"]).set_index("group")
    df = pd.DataFrame([{"qt": g.meta["question_type"], "js": float(x)} for g in world["ga"] for x in g.drift])
    exp = df.groupby("qt")["js"].mean()
    for qt, v in exp.items():
        assert got.loc[qt, "mean_js_bits"] == pytest.approx(v, rel=1e-5)


def test_flips(world):
    got = world["lib"].run("flips", run_id=world["a"], perturbation="patch_shuffle", limit=1000)
    df = _pairs(world["ga"])
    exp = df[(df.kind == "patch_shuffle") & df.changed].sort_values(["dW", "example"], ascending=[False, True])
    assert list(got["example_id"]) == list(exp["example"])
    assert list(got["dp"]) == pytest.approx(list(exp["dp"]), rel=1e-5)


def test_faithfulness_by_question_type(world):
    got = (
        world["lib"].run("faithfulness_by_question_type", run_id=world["a"], min_examples=1).set_index("question_type")
    )
    df = _pairs(world["ga"])
    for qt, sub in df.groupby("qtype"):
        r = np.corrcoef(sub["dW"], sub["dp"].abs())[0, 1]
        assert got.loc[qt, "pearson_dW_abs_dp"] == pytest.approx(r, rel=1e-4)
        gs = [g for g in world["ga"] if g.meta["question_type"] == qt]
        aucs = np.array([g.deletion_auc() for g in gs])
        assert got.loc[qt, "deletion_auc_ratio"] == pytest.approx(aucs[:, 0].sum() / aucs[:, 1].sum(), rel=1e-5)


def test_example_links_and_graph(world):
    g = world["ga"][0]
    links = world["lib"].run("example_links", example_id=g.example_id, run_id=world["a"])
    n, T, Kp = len(g.tokens), len(g.answer_tokens), len(g.perturbations)
    assert (links.source == "token").sum() == n * K and (links.source == "step").sum() == T * K
    assert (links.source == "dW").sum() == n * Kp * K
    tok0 = links[(links.source == "token") & (links.source_index == 0)].sort_values("rank")
    assert list(tok0["region"]) == list(np.argsort(-g.W[0], kind="stable")[:K])
    paths = world["lib"].run("example_graph", example_id=g.example_id, run_id=world["a"], max_rank=1)
    assert len(paths) == n + T + (T - 1) + Kp


def test_compare_runs(world):
    got = world["lib"].run("compare_runs", run_a=world["a"], run_b=world["b"]).set_index("perturbation")
    ea, eb = _pairs(world["ga"]).groupby("kind")["dW"].mean(), _pairs(world["gb"]).groupby("kind")["dW"].mean()
    for k in ea.index:
        assert got.loc[k, "a_mean_dW_fro"] == pytest.approx(ea[k], rel=1e-5)
        assert got.loc[k, "b_mean_dW_fro"] == pytest.approx(eb[k], rel=1e-5)
        assert got.loc[k, "a_examples"] == 40 and got.loc[k, "b_examples"] == 25


def test_wrong_answer_regions(world):
    from stcg_model.text import normalize_answer

    got = world["lib"].run("wrong_answer_regions", run_id=world["a"], limit=64)
    rows = [
        {
            "rc": (p // g.grid, p % g.grid),
            "wrong": normalize_answer(g.answer) != normalize_answer(g.meta["gt_answer"]),
            "a": float(g.attribution[p]),
        }
        for g in world["ga"]
        for p in range(g.num_regions)
    ]
    df = pd.DataFrame(rows)
    wrong, right = df[df.wrong].groupby("rc")["a"].mean(), df[~df.wrong].groupby("rc")["a"].mean()
    excess = (wrong.reindex(right.index).fillna(0) - right).sort_values(ascending=False)
    top = got.iloc[0]
    assert top["excess"] == pytest.approx(excess.iloc[0], rel=1e-4)


def test_parameters_are_validated_and_injection_changes_nothing(world, driver):
    lib = world["lib"]
    with pytest.raises(StcgError, match="no parameter bogus; its parameters: run_id, perturbation, limit"):
        lib.run("flips", bogus=1)
    with pytest.raises(StcgError, match="unknown template 'nope'; templates: compare_runs"):
        lib.run("nope")
    with pytest.raises(StcgError, match="must be int"):
        lib.run("flips", limit="ten")
    before = driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"]
    evil = "color_shift'}) MATCH (n) DETACH DELETE n //"
    assert len(lib.run("flips", run_id=world["a"], perturbation=evil)) == 0
    assert len(lib.run("question_type_regions", run_id=world["a"], question_type="x' OR 1=1 //")) == 0
    assert driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"] == before


def test_cli_query_run_formats(world):
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stcg_cli.main",
            "query",
            "run",
            "perturbation_summary",
            "--param",
            f"run_id={world['a']}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {r["perturbation"] for r in rows} == set(world["ga"][0].perturbations)
    bad = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "query", "run", "flips", "--param", "limit=x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: parameter 'limit' must be int, got 'x'"
    desc = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "query", "describe", "flips"], capture_output=True, text=True
    )
    assert ':param perturbation => "color_shift"' in desc.stdout and ":param run_id => null" in desc.stdout
