"""Attribution methods in Neo4j: Explanation nodes, per-method links and the two method templates,
on runs really ingested with a tiny BLIP-2 (T5) checkpoint, checked against the file store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from queries.library import QueryLibrary, load_template, template_names
from queries.metrics import load_run_graphs
from stcg_model.maths.regions import top_fraction
from stcg_model.statistics.metrics import jaccard, summarise_methods
from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder

METHODS = ["attention", "rollout", "relevancy", "occlusion"]
TOP_K = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, driver):
    """The same 6 questions ingested twice: plain, and with --attributions rollout,relevancy,occlusion."""
    import uuid

    tmp = tmp_path_factory.mktemp("method-graph")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=3, questions_per_image=2)
    tag = uuid.uuid4().hex[:8]
    plain, methods = f"test-plain-{tag}", f"test-methods-{tag}"
    kw = dict(deletion_steps=2, top_k=TOP_K, perturbations="gaussian_noise,center_mask,patch_shuffle")
    try:
        ingest_fixture_run(folder, tiny_checkpoint, plain, tmp / "store", **kw)
        ingest_fixture_run(folder, tiny_checkpoint, methods, tmp / "store", attributions=",".join(METHODS), **kw)
        lib = QueryLibrary(driver)
        graphs, qtypes = load_run_graphs(lib, methods)
        assert len(graphs) == 6 and all(g.method_names == METHODS for g in graphs)
        yield {"plain": plain, "methods": methods, "lib": lib, "graphs": graphs, "qtypes": qtypes}
    finally:
        with driver.session() as s:
            for rid in (plain, methods):
                s.run(
                    "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid
                ).consume()


def _frame(df: pd.DataFrame, run: str) -> list[dict]:
    """Rows with run ids replaced (the two runs differ in their ids only)."""
    return [
        {k: (v.replace(run, "RUN") if isinstance(v, str) else v) for k, v in r.items()} for r in df.to_dict("records")
    ]


def test_existing_templates_return_the_same_for_the_default_method(runs):
    """Per-method nodes and links change nothing that a template read before they existed."""
    lib = runs["lib"]
    checked, nonempty = 0, 0
    for name in template_names():
        if name.startswith(("method_", "claim_")) or name in ("runs", "compare_runs"):
            continue  # the method templates are new; runs / compare_runs list runs, not one run's graph
        t = load_template(name)
        if not any(p.name == "run_id" for p in t.params):
            continue
        extra = {"example_id": runs["graphs"][0].example_id} if t.param("example_id") else {}
        for view in ("structural", "temporal", "counterfactual", "all") if name == "example_graph" else (None,):
            kw = {**extra, **({"view": view} if view else {})}
            if name == "example_graph":  # paths: compare the drawn nodes' uids and the relationships' properties
                a = _paths(lib, runs["plain"], kw)
                b = _paths(lib, runs["methods"], kw)
            else:
                a = _frame(lib.run(name, run_id=runs["plain"], **kw), runs["plain"])
                b = _frame(lib.run(name, run_id=runs["methods"], **kw), runs["methods"])
            assert _close(a, b), name
            checked, nonempty = checked + 1, nonempty + (len(a) > 0)
    assert checked >= 13 and nonempty >= checked - 2  # flips and run_examples may find no flip on a tiny model


def _paths(lib, run, kw):
    """The drawn paths (node properties, relationship types and properties), run ids replaced, sorted."""
    t = load_template("example_graph")
    records, _, _ = lib.driver.execute_query(t.cypher, t.bind(run_id=run, **kw))
    out = []
    for rec in records:
        p = rec["p"]
        nodes = [{"_labels": sorted(n.labels), **dict(n)} for n in p.nodes]
        rels = [{"_type": r.type, **dict(r)} for r in p.relationships]
        out.append(_replace([nodes, rels], run))
    assert all(len(x[1]) for x in out)
    return sorted(out, key=repr)


def _replace(x, run):
    if isinstance(x, str):
        return x.replace(run, "RUN")
    if isinstance(x, dict):  # bookkeeping of the write (when, which store shard) differs between runs
        return {k: _replace(v, run) for k, v in x.items() if k not in ("completed_at", "store_shard")}
    if isinstance(x, (list, tuple)):
        return [_replace(v, run) for v in x]
    return x


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


def test_explanation_nodes_and_links_hold_each_methods_explanation(runs, driver):
    """Every method's node, links and scores equal the arrays in the file store."""
    with driver.session() as s:
        for g in runs["graphs"]:
            uid = f"{runs['methods']}/{g.example_id}"
            xs = {
                r["x"]["method"]: r["x"]
                for r in s.run("MATCH (:Example {uid: $u})-[:HAS_EXPLANATION]->(x) RETURN x", u=uid).data()
            }
            assert list(sorted(xs)) == sorted(METHODS)
            for name in METHODS:
                m, x = g.method(name), xs[name]
                np.testing.assert_allclose(x["attribution"], m.region, rtol=1e-6)
                for key, value in m.scores.items():
                    assert x[key] == pytest.approx(value, rel=1e-9), (name, key)
                if m.W is None:  # occlusion: no token map, no token links, no dW
                    assert "token_entropy" not in x
                else:
                    p = m.W.astype(np.float64)
                    p = p / p.sum(1, keepdims=True)
                    ent = -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(1)
                    np.testing.assert_allclose(x["token_entropy"], ent, rtol=1e-5)
                # top-k token -> region links of the method (attention's are ATTENDS, the others ATTRIBUTES)
                links = s.run(
                    "MATCH (:Example {uid: $u})-[:HAS_TOKEN]->(t:Token)-[a:ATTENDS|ATTRIBUTES]->(r:Region) "
                    "WHERE coalesce(a.method, 'attention') = $m RETURN t.index AS i, r.index AS p, a.weight AS w, "
                    "a.rank AS k ORDER BY i, k",
                    u=uid,
                    m=name,
                ).data()
                if m.W is None:
                    assert links == []
                else:
                    exp = [
                        (i, int(p), float(m.W[i, p]), k + 1)
                        for i in range(len(g.tokens))
                        for k, p in enumerate(np.argsort(-m.W[i], kind="stable")[:TOP_K])
                    ]
                    assert [(r["i"], r["p"], r["k"]) for r in links] == [(i, p, k) for i, p, _, k in exp]
                    np.testing.assert_allclose([r["w"] for r in links], [w for _, _, w, _ in exp], rtol=1e-6)
                ranks = s.run(
                    "MATCH (x:Explanation {uid: $x})-[k:RANKS]->(r:Region) RETURN r.index AS p ORDER BY k.rank",
                    x=f"{uid}/x/{name}",
                ).data()
                assert [r["p"] for r in ranks] == list(np.argsort(-m.region, kind="stable")[:TOP_K])
                under = {
                    r["kind"]: r
                    for r in s.run(
                        "MATCH (x:Explanation {uid: $x})-[u:UNDER]->(p:Perturbation) "
                        "RETURN p.kind AS kind, u.dW_fro AS dW_fro, u.jaccard AS jaccard",
                        x=f"{uid}/x/{name}",
                    ).data()
                }
                assert sorted(under) == sorted(g.perturbations)
                for q, kind in enumerate(g.perturbations):
                    if np.isfinite(m.region_pert[q]).all():
                        exp_j = jaccard(top_fraction(m.region, 0.1), top_fraction(m.region_pert[q], 0.1))
                        assert under[kind]["jaccard"] == pytest.approx(exp_j)
                    else:  # occlusion is computed under the stability perturbation only
                        assert name == "occlusion" and kind != "gaussian_noise" and under[kind]["jaccard"] is None
                    if m.W is None:
                        assert under[kind]["dW_fro"] is None
                    else:
                        assert under[kind]["dW_fro"] == pytest.approx(float(m.dW_fro[q]), rel=1e-6)
    # the plain run has none of it
    with driver.session() as s:
        n = s.run(
            "MATCH (n {run_id: $r}) WHERE n:Explanation OR EXISTS { (n)-[:ATTRIBUTES]->() } RETURN count(n) AS c",
            r=runs["plain"],
        ).single()["c"]
    assert n == 0


def test_method_faithfulness_equals_summarise_methods(runs):
    lib, graphs, qtypes = runs["lib"], runs["graphs"], runs["qtypes"]
    got = lib.run("method_faithfulness", run_id=runs["methods"]).set_index("method")
    exp = summarise_methods(graphs, n_boot=0)
    assert set(got.index) == set(METHODS)
    for name in METHODS:
        assert got.loc[name, "examples"] == len(graphs)
        for metric, est in exp[name].items():
            if metric == "causal_faithfulness_spearman":
                continue  # Python only (ranks across pairs)
            assert got.loc[name, metric] == pytest.approx(est.value, rel=1e-6, abs=1e-9), (name, metric)
    assert np.isnan(got.loc["occlusion", "causal_faithfulness_pearson"])  # no W: no |dW|_F
    assert list(got["deletion_ratio"]) == sorted(got["deletion_ratio"])  # most faithful first
    by_q = lib.run("method_faithfulness", run_id=runs["methods"], by_question_type=True)
    for (qt, name), row in by_q.set_index(["question_type", "method"]).iterrows():
        sub = [g for g, q in zip(graphs, qtypes) if q == qt]
        ref = summarise_methods(sub, n_boot=0)[name]
        assert row["examples"] == len(sub)
        assert row["deletion_ratio"] == pytest.approx(ref["deletion_ratio"].value, rel=1e-6)
        assert row["comprehensiveness"] == pytest.approx(ref["comprehensiveness"].value, rel=1e-6, abs=1e-12)
    assert by_q.groupby("method")["examples"].sum().to_dict() == {m: len(graphs) for m in METHODS}


def test_method_agreement_is_the_mean_spearman_of_region_attributions(runs):
    lib, graphs, qtypes = runs["lib"], runs["graphs"], runs["qtypes"]
    for a, b in (("attention", "relevancy"), ("rollout", "occlusion")):  # occlusion's map ties at zero
        got = lib.run("method_agreement", run_id=runs["methods"], method_a=a, method_b=b).set_index("question_type")
        rho = [stats.spearmanr(g.method(a).region, g.method(b).region)[0] for g in graphs]
        same = [int(np.argmax(g.method(a).region) == np.argmax(g.method(b).region)) for g in graphs]
        df = pd.DataFrame({"q": qtypes, "rho": rho, "same": same})
        assert set(got.index) == set(df["q"])
        for q, sub in df.groupby("q"):
            assert got.loc[q, "examples"] == len(sub)
            assert got.loc[q, "mean_spearman"] == pytest.approx(sub["rho"].mean(), rel=1e-9, abs=1e-12)
            assert got.loc[q, "same_top_region"] == pytest.approx(sub["same"].mean())
    whole = lib.run("method_agreement", run_id=runs["methods"], method_b="attention", by_question_type=False)
    assert len(whole) == 1 and whole.loc[0, "mean_spearman"] == pytest.approx(1.0)
    assert whole.loc[0, "examples"] == len(graphs)


def test_example_links_and_graph_per_method(runs):
    lib, g = runs["lib"], runs["graphs"][0]
    links = lib.run("example_links", run_id=runs["methods"], example_id=g.example_id, method="relevancy")
    tok = links[links.source == "token"].sort_values(["source_index", "rank"])
    m = g.method("relevancy")
    assert list(tok["region"]) == [
        int(p) for i in range(len(g.tokens)) for p in np.argsort(-m.W[i], kind="stable")[:TOP_K]
    ]
    assert set(links["source"]) == {"token", "step"}  # dW links are attention's only
    occl = lib.run("example_links", run_id=runs["methods"], example_id=g.example_id, method="occlusion")
    assert set(occl["source"]) == {"step"}
    drawn = _paths(lib, runs["methods"], {"example_id": g.example_id, "method": "occlusion"})
    assert {r["_type"] for _, rels in drawn for r in rels} == {"HAS_EXPLANATION", "RANKS"}  # no token map: its ranking
    regions = {n["index"] for nodes, _ in drawn for n in nodes if n["_labels"] == ["Region"]}
    assert regions == set(np.argsort(-g.method("occlusion").region, kind="stable")[:TOP_K].tolist())


def test_claim_templates_per_method_equal_the_python_claims(runs):
    """Claims 4-6 under each method from the Explanation nodes (pure Cypher) equal stcg claims' numbers."""
    from stcg_model.statistics.claims import TokenArrays

    lib, graphs = runs["lib"], runs["graphs"]
    per = summarise_methods(graphs, n_boot=0)
    for name in METHODS:
        got = lib.run("claim_content_function", run_id=runs["methods"], method=name)
        arrays = TokenArrays.from_graphs(graphs, TOP_K, name)
        if arrays is None:  # occlusion: no token map, no rows
            assert name == "occlusion" and got.empty
        else:
            got = got.iloc[0]
            used, diffs = arrays.differences()
            assert got["examples"] == len(used) > 0
            for col, prop in (("diff_entropy_bits", "entropy"), ("diff_top_k_mass", "top_k_mass")):
                assert got[col] == pytest.approx(diffs[prop].mean(), rel=1e-6, abs=1e-9), (name, col)
            assert got["diff_spread_patches"] == pytest.approx(diffs["spread"].mean(), rel=1e-6, abs=1e-9)
        cf = lib.run("claim_causal_faithfulness", run_id=runs["methods"], method=name).iloc[0]
        if name == "attention":  # the main |dW|_F (Perturbation.dW_fro), as stcg metrics
            from stcg_model.statistics.metrics import summarise

            ref = summarise(graphs, n_boot=0)
        else:
            ref = per[name]
        if "causal_faithfulness_pearson" in ref:
            assert cf["pearson"] == pytest.approx(ref["causal_faithfulness_pearson"].value, rel=1e-6)
            assert cf["spearman"] == pytest.approx(ref["causal_faithfulness_spearman"].value, rel=1e-6)
        else:
            assert name == "occlusion" and cf["pairs"] == 0
        js = lib.run("claim_jaccard_stability", run_id=runs["methods"], method=name).iloc[0]
        assert js["jaccard_stability"] == pytest.approx(per[name]["jaccard_stability"].value, rel=1e-9)
    # the default method gives what it gave before methods existed: the plain run's numbers
    for t in ("claim_content_function", "claim_causal_faithfulness", "claim_jaccard_stability"):
        a = lib.run(t, run_id=runs["plain"]).to_dict("records")
        b = lib.run(t, run_id=runs["methods"]).to_dict("records")
        assert _close(a, b), t


def test_ingestion_wrote_the_statistics_and_they_answer_as_the_graph(runs, driver):
    """Both runs finished complete through the pipeline, so each has its statistics (per method too);
    every whole-run template answers the same from them as from the graph (dropped, then rewritten)."""
    from ingest.stats import drop_run_stats, write_run_stats
    from ingest.writer import Neo4jWriter

    lib, writer = runs["lib"], Neo4jWriter(driver)
    for run, methods in ((runs["plain"], ["attention"]), (runs["methods"], sorted(METHODS))):
        rows = writer.run_query(
            "MATCH (:Run {uid: $r})-[:HAS_STATS]->(x:Stats) RETURN x.of AS of, x.method AS m, x.examples AS n", r=run
        )
        assert next(r["n"] for r in rows if r["of"] == "run") == 6
        assert sorted(r["m"] for r in rows if r["of"] == "causal") == methods
        cases = [(n, {"method": m}) for n in ("claim_causal_faithfulness", "claim_content_function") for m in methods]
        cases += [(n, {}) for n in template_names() if n.startswith("claim_") or n in WHOLE_RUN]
        stored = [_frame(lib.run(n, run_id=run, **kw), run) for n, kw in cases]
        drop_run_stats(writer, run)
        try:
            scanned = [_frame(lib.run(n, run_id=run, **kw), run) for n, kw in cases]
        finally:
            write_run_stats(writer, run)
        for (name, kw), a, b in zip(cases, stored, scanned):
            assert _close(a, b), (name, kw)
        assert sum(len(a) > 0 for a in stored) >= len(cases) - 2


WHOLE_RUN = (
    "perturbation_summary",
    "dissociation",
    "faithfulness_by_question_type",
    "question_type_regions",
    "wrong_answer_regions",
    "token_localisation",
    "temporal_drift",
)
