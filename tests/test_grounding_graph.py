"""Ground truth in the graph (issue 23, part 6; docs/spec.md section 7, docs/scenes.md).

Six scenes test questions (mask kinds single, union and all) are explained by the scenes model (the
default for ``--dataset scenes``) with rollout, occlusion, oracle and random beside attention, twice: over Bolt into the shared server, and as
CSV files bulk-loaded (``neo4j-admin import``, as ``stcg load``) into a server of this module's own. Then:
the Example, Region and Explanation properties equal the run's file store, both paths store the same, the
``method_grounding`` template equals the means computed in Python per method, mask kind and question type,
``stcg metrics --by-method`` adds the metrics with their BCa intervals, and the report shows them.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import uuid

import numpy as np
import pandas as pd
import pytest
from neo4j import GraphDatabase

from ingest.rows import example_payload
from queries.library import QueryLibrary
from queries.metrics import GROUNDING_METRICS, load_run_graphs
from stcg_model.maths.grounding import grounding_scores

N = 6  # scenes:test:0..5 -- mask kinds single, union and all; three question types
KW = dict(
    split="test",
    attributions="rollout,occlusion,oracle,random",
    perturbations="gaussian_noise",
    deletion_steps=2,
    top_k=3,
    batch_size=3,
    device="cpu",
)
METHODS = ["attention", "rollout", "occlusion", "oracle", "random"]
SCORES = ("mass_accuracy", "rank_accuracy", "pointing_game", "chance")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ingest(run: str, store, **kw):
    from ingest.pipeline import IngestConfig, run_ingest

    cfg = IngestConfig(dataset=f"scenes:{N}", run_name=run, store=str(store), **KW, **kw)
    return run_ingest(cfg, progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def world(tmp_path_factory, driver):
    from ingest.bulk import load_csv
    from stcg.neo4j_runtime import LocalNeo4j

    tmp = tmp_path_factory.mktemp("grounding")
    bolt_id, bulk_id = f"test-gt-{uuid.uuid4().hex[:10]}", "bulk-gt"
    server = LocalNeo4j(
        home=tmp / "neo4j", bolt_port=_free_port(), http_port=_free_port(), heap="512m", pagecache="64m"
    )
    try:
        _ingest(bolt_id, tmp / "store-bolt")
        _ingest(bulk_id, tmp / "store-csv", sink=f"csv:{tmp / 'csv'}")
        load_csv(tmp / "csv", server, log=lambda s: None)
        lib = QueryLibrary(driver)
        graphs, qtypes = load_run_graphs(lib, bolt_id)
        with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as bulk:
            yield {
                "bolt": driver,
                "bulk": bulk,
                "lib": lib,
                "run": bolt_id,
                "bulk_run": bulk_id,
                "graphs": graphs,
                "qtypes": qtypes,
                "tmp": tmp,
            }
    finally:
        server.stop(log=lambda s: None)
        with driver.session() as s:
            s.run(
                "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=bolt_id
            ).consume()


def _expected(world) -> pd.DataFrame:
    """One row per (example, method): the method's ground-truth scores as the engine computed them."""
    rows = []
    for g, qt in zip(world["graphs"], world["qtypes"]):
        for name in g.method_names:
            sc = g.method(name).scores
            rows.append(
                {"method": name, "question_type": qt, "mask_kind": g.meta["mask_kind"], **{k: sc[k] for k in SCORES}}
            )
    return pd.DataFrame(rows)


def _ground_truth(drv, run: str) -> dict:
    """Every ground-truth property of a run, keyed by example id (and region index / method)."""
    ex = drv.execute_query(
        "MATCH (e:Example {run_id: $r}) RETURN e.example_id AS id, e.mask_kind AS kind, e.gt AS gt, "
        "e.gt_chance AS chance",
        r=run,
    ).records
    reg = drv.execute_query(
        "MATCH (e:Example {run_id: $r})-[:HAS_REGION]->(x:Region) RETURN e.example_id AS id, x.index AS i, x.gt AS gt",
        r=run,
    ).records
    exp = drv.execute_query(
        "MATCH (e:Example {run_id: $r})-[:HAS_EXPLANATION]->(x:Explanation) RETURN e.example_id AS id, "
        "x.method AS method, [k IN $keys | x[k]] AS scores",
        r=run,
        keys=list(SCORES),
    ).records
    return {
        "examples": {r["id"]: (r["kind"], r["gt"], r["chance"]) for r in ex},
        "regions": {(r["id"], r["i"]): r["gt"] for r in reg},
        "explanations": {(r["id"], r["method"]): r["scores"] for r in exp},
    }


def test_a_scenes_run_without_model_is_explained_by_the_scenes_model_it_records(world):
    """Without ``--model`` a scenes run records the scenes model as its model, and that is the model that
    explains it: the engine's recorded parameters and every STCG name it (before the fix, the run
    recorded the scenes model while the easy-VQA demo model did the work)."""
    import json

    from stcg_model.families.loading import SCENES_MODEL_DIR

    (run,) = world["bolt"].execute_query("MATCH (r:Run {uid: $r}) RETURN r", r=world["run"]).records
    assert run["r"]["model"] == str(SCENES_MODEL_DIR) and run["r"]["family"] == "blip2"
    assert json.loads(run["r"]["params"])["engine"]["model"] == str(SCENES_MODEL_DIR)
    assert {g.params["model"] for g in world["graphs"]} == {str(SCENES_MODEL_DIR)}


def test_the_graph_holds_the_ground_truth_of_the_file_store(world):
    """Example.mask_kind / gt / gt_chance, Region.gt and the Explanation scores equal the stored STCGraphs,
    and the scores equal ``grounding_scores`` recomputed from each method's stored region attribution."""
    graphs = world["graphs"]
    assert len(graphs) == N and {g.meta["mask_kind"] for g in graphs} == {"single", "union", "all"}
    got = _ground_truth(world["bolt"], world["run"])
    assert len(got["examples"]) == N and len(got["explanations"]) == N * len(METHODS)
    regions_in_mask = 0
    for g in graphs:
        kind, gt, ch = got["examples"][g.example_id]
        assert kind == g.meta["mask_kind"]
        assert gt == np.asarray(g.gt, np.float64).tolist()  # the stored float32 values, exactly
        assert ch == np.count_nonzero(g.gt > 0) / g.num_regions
        mine = {i: v for (eid, i), v in got["regions"].items() if eid == g.example_id}
        assert mine and all(v == float(g.gt[i]) for i, v in mine.items())
        regions_in_mask += sum(v > 0 for v in mine.values())
        assert g.method_names == METHODS
        for name in METHODS:
            stored = dict(zip(SCORES, got["explanations"][(g.example_id, name)]))
            assert stored == pytest.approx({k: g.method(name).scores[k] for k in SCORES}, rel=1e-12, nan_ok=True)
            assert stored == pytest.approx(grounding_scores(g.method(name).region, g.gt), rel=1e-6, nan_ok=True)
        assert dict(zip(SCORES, got["explanations"][(g.example_id, "oracle")]))["mass_accuracy"] == pytest.approx(1.0)
    assert regions_in_mask > 0


def test_the_bulk_load_stores_the_same_ground_truth_as_bolt(world):
    a, b = _ground_truth(world["bolt"], world["run"]), _ground_truth(world["bulk"], world["bulk_run"])
    assert len(a["regions"]) > N and len(a["explanations"]) == N * len(METHODS)
    for part in ("examples", "regions", "explanations"):
        assert a[part].keys() == b[part].keys(), part
        for k in a[part]:
            assert _close(a[part][k], b[part][k]), (part, k, a[part][k], b[part][k])
    # the same property types both ways: a list of floats, a string, floats
    types = [
        drv.execute_query(
            "MATCH (e:Example {run_id: $r})-[:HAS_REGION]->(x:Region)<-[:RANKS]-(m:Explanation) "
            "RETURN DISTINCT valueType(e.gt) AS gt, valueType(e.mask_kind) AS kind, valueType(e.gt_chance) AS chance, "
            "valueType(x.gt) AS region, valueType(m.mass_accuracy) AS mass, valueType(m.pointing_game) AS pointing",
            r=run,
        ).records
        for drv, run in ((world["bolt"], world["run"]), (world["bulk"], world["bulk_run"]))
    ]
    assert [r.data() for r in types[0]] == [r.data() for r in types[1]]
    assert [r.data() for r in types[0]] == [
        {
            "gt": "LIST<FLOAT NOT NULL> NOT NULL",
            "kind": "STRING NOT NULL",
            "chance": "FLOAT NOT NULL",
            "region": "FLOAT NOT NULL",
            "mass": "FLOAT NOT NULL",
            "pointing": "FLOAT NOT NULL",
        }
    ]


def _close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True)
    return a == b


@pytest.mark.parametrize("group", [None, "mask_kind", "question_type"])
def test_method_grounding_equals_the_python_means(world, group):
    exp = _expected(world)
    for k in SCORES[:3]:  # an undefined metric (NaN) is left out of its mean, and of its difference to chance
        exp[f"{k}_over_chance"] = exp[k] - exp["chance"]
    keys = ["method"] + ([group] if group else [])
    want = exp.groupby(keys).agg(
        examples=("chance", "size"),
        mass_scored=("mass_accuracy", "count"),
        **{c: (c, "mean") for c in exp.columns if c not in ("method", "question_type", "mask_kind")},
    )
    params = {"by_mask_kind": group == "mask_kind", "by_question_type": group == "question_type"}
    for side, run in (("bolt", world["run"]), ("bulk", world["bulk_run"])):
        lib = world["lib"] if side == "bolt" else QueryLibrary(world["bulk"])
        got = lib.run("method_grounding", run_id=run, **params)
        other = {"mask_kind", "question_type"} - {group}
        assert all(got[c].isna().all() for c in other)
        got = got.set_index(keys)
        assert sorted(got.index) == sorted(want.index), side
        for idx in want.index:
            assert got.loc[idx, "examples"] == want.loc[idx, "examples"]
            assert got.loc[idx, "mass_scored"] == want.loc[idx, "mass_scored"]
            for col in want.columns.drop(["examples", "mass_scored"]):
                assert got.loc[idx, col] == pytest.approx(want.loc[idx, col], rel=1e-9, abs=1e-12), (side, idx, col)
    # groups below min_examples are left out; the oracle is perfect, and ranked first in every group
    few = world["lib"].run("method_grounding", run_id=world["run"], by_mask_kind=True, min_examples=3)
    assert set(few.mask_kind) == {k for k, n in exp.groupby("mask_kind").size().items() if n // len(METHODS) >= 3}
    whole = world["lib"].run("method_grounding", run_id=world["run"])
    assert whole.method.iloc[0] == "oracle" and whole.mass_accuracy.iloc[0] == pytest.approx(1.0)


def test_metrics_by_method_adds_the_ground_truth_with_bca_intervals(world):
    from click.testing import CliRunner

    from stcg_cli.main import cli
    from stcg_model.statistics.metrics import bootstrap

    res = CliRunner().invoke(
        cli,
        ["metrics", "--run", world["run"], "--by-method", "--by-mask-kind", "--bootstrap", "200", "--format", "csv"],
    )
    assert res.exit_code == 0, res.output
    assert "ground truth" in res.stderr and f"over {N} examples with a mask" in res.stderr
    df = pd.read_csv(io.StringIO(res.stdout))
    exp = _expected(world)
    mask_groups = {f"mask:{k}" for k in exp.mask_kind}
    assert mask_groups <= set(df.group) and "all" in set(df.group)
    for grp, part in (("all", exp), *((f"mask:{k}", exp[exp.mask_kind == k]) for k in sorted(set(exp.mask_kind)))):
        for method in METHODS:
            rows = df[(df.group == grp) & (df.method == method)].set_index("metric")
            assert {"deletion_ratio", "insertion_ratio", *GROUNDING_METRICS} <= set(rows.index), (grp, method)
            assert list(rows.index[-4:]) == list(GROUNDING_METRICS)  # after the protocol's metrics
            for k in GROUNDING_METRICS:
                values = part[part.method == method][k].to_numpy(np.float64)
                values = values[np.isfinite(values)]  # an undefined metric is left out
                est = bootstrap(lambda i, c=values: c[i].mean(-1), len(values), 200, 0, vectorized=True)
                r = rows.loc[k]
                assert r["value"] == pytest.approx(values.mean(), rel=1e-9) and r["examples"] == len(values)
                assert r["ci_method"] == "BCa"
                assert (np.isnan(r["ci_low"]) and np.isnan(est.low)) or (
                    r["ci_low"] == pytest.approx(est.low, rel=1e-6)
                    and r["ci_high"] == pytest.approx(est.high, rel=1e-6)
                )
                if not np.isnan(r["ci_low"]):
                    assert r["ci_low"] <= r["value"] <= r["ci_high"]
    oracle = df[(df.group == "all") & (df.method == "oracle")].set_index("metric")
    assert oracle.loc["mass_accuracy", "value"] == pytest.approx(1.0) and np.isnan(
        oracle.loc["mass_accuracy", "ci_low"]
    )
    chance = df[(df.group == "all") & (df.metric == "chance")]["value"]
    assert chance.nunique() == 1 and chance.iloc[0] == pytest.approx(exp.chance.mean())


def test_the_report_shows_the_ground_truth_beside_the_protocol(world):
    from PIL import Image

    from queries.report import build_report
    from queries.report_images import MASK_OUTLINE

    path = build_report(world["lib"], world["run"], None, world["tmp"] / "report.html", examples=2, n_boot=50)
    text = path.read_text()
    section = text.split("<h2>Which explanation is faithful?</h2>", 1)[1].split("<h2>", 1)[0]
    header = re.search(r"<thead>(.*?)</thead>", section, re.S).group(1)
    cols = re.findall(r"<th>(.*?)</th>", header)
    assert cols[:3] == ["method", "deletion ratio", "insertion ratio"]
    assert cols[-4:] == ["mass accuracy", "rank accuracy", "pointing game", "chance (K/P)"]
    assert "Per mask kind" in section and "class='mask-kind'>single" in section
    # the per-method heatmaps of each example carry the mask's outline
    panels = re.findall(r"<img style='max-width:100%[^']*' alt='[^']*' src='data:image/png;base64,([^']+)'", section)
    assert len(panels) == 2
    for b in panels:
        px = np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")).reshape(-1, 3)
        assert (px == np.asarray(MASK_OUTLINE)).all(1).sum() > 100


def test_examples_without_a_mask_get_no_ground_truth_and_the_outline_follows_the_mask():
    from queries.report_images import mask_edges
    from stcg_model.testing.synthetic import synthetic_graph

    g = synthetic_graph("ex0", np.random.default_rng(0))
    x = example_payload(g, "r", 3)
    assert (x["example"]["mask_kind"], x["example"]["gt"], x["example"]["gt_chance"]) == (None, None, None)
    assert all(r["gt"] is None for r in x["regions"])
    g.gt = np.zeros(g.num_regions, np.float32)
    g.gt[[9, 10, 17, 18]] = [0.25, 1.0, 1.0, 0.5]  # a 2 x 2 block of the 8 x 8 grid
    g.meta["mask_kind"] = "single"
    x = example_payload(g, "r", 3)
    assert x["example"]["mask_kind"] == "single" and x["example"]["gt_chance"] == 4 / 64
    assert x["example"]["gt"] == np.asarray(g.gt, np.float64).tolist()
    assert all(r["gt"] == float(g.gt[r["index"]]) for r in x["regions"])
    # outline of that block on a 64 x 64 picture: its four sides, two segments each
    edges = mask_edges(g.gt, 8, 64, 64)
    assert sorted(edges) == sorted(
        [(8, 8, 15, 8), (16, 8, 23, 8), (8, 23, 15, 23), (16, 23, 23, 23),
         (8, 8, 8, 15), (8, 16, 8, 23), (23, 8, 23, 15), (23, 16, 23, 23)]
    )  # fmt: skip
