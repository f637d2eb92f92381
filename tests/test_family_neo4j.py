"""Runs of four model families side by side in the real Neo4j: the same VQA-v2-format questions ingested
with tiny BLIP-2 (T5), LLaVA, InstructBLIP (Llama) and Qwen2.5-VL checkpoints (all saved with
``save_pretrained`` and loaded by path like any checkpoint), every method; every template answers on the
LLaVA, InstructBLIP and Qwen runs, each run records its family, and ``compare_runs`` pairs two models'
answers question by question."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from queries.library import QueryLibrary, load_template, template_names
from queries.metrics import load_run_graphs
from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder

METHODS = "rollout,relevancy,gradcam,occlusion"


@pytest.fixture(scope="module")
def llava_checkpoint(tmp_path_factory) -> str:
    from stcg_model.testing.tiny import tiny_llava

    d = tmp_path_factory.mktemp("tiny-llava")
    lm = tiny_llava(seed=4)
    lm.model.save_pretrained(d)
    lm.processor.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def instructblip_checkpoint(tmp_path_factory) -> str:
    from stcg_model.testing.tiny import tiny_instructblip

    d = tmp_path_factory.mktemp("tiny-instructblip")
    lm = tiny_instructblip("llama", seed=4)
    lm.model.save_pretrained(d)
    lm.processor.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory) -> str:
    from stcg_model.testing.tiny import tiny_qwen_vl

    d = tmp_path_factory.mktemp("tiny-qwen")
    lm = tiny_qwen_vl("2.5", seed=4, native=True, min_side=112)  # at its own resolution, as released checkpoints
    lm.model.save_pretrained(d)
    lm.processor.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_checkpoint, llava_checkpoint, instructblip_checkpoint, qwen_checkpoint, driver):
    tmp = tmp_path_factory.mktemp("families")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=3, questions_per_image=2)
    tag = uuid.uuid4().hex[:8]
    runs = {f: f"test-fam-{f}-{tag}" for f in ("blip2", "llava", "instructblip", "qwen_vl")}
    kw = dict(deletion_steps=2, top_k=3, attributions=METHODS)
    try:
        ingest_fixture_run(folder, tiny_checkpoint, runs["blip2"], tmp / "store", **kw)
        ingest_fixture_run(folder, llava_checkpoint, runs["llava"], tmp / "store", **kw)
        ingest_fixture_run(folder, instructblip_checkpoint, runs["instructblip"], tmp / "store", **kw)
        ingest_fixture_run(folder, qwen_checkpoint, runs["qwen_vl"], tmp / "store", **kw)
        yield {**runs, "lib": QueryLibrary(driver)}
    finally:
        with driver.session() as s:
            for rid in runs.values():
                s.run(
                    "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid
                ).consume()


def test_each_run_records_its_family_and_its_graphs_read_back(two_runs):
    lib = two_runs["lib"]
    runs = lib.run("runs", limit=1000).set_index("run_id")
    assert runs.loc[two_runs["blip2"], "family"] == "blip2"
    assert runs.loc[two_runs["llava"], "family"] == "llava"
    assert runs.loc[two_runs["instructblip"], "family"] == "instructblip"
    assert runs.loc[two_runs["qwen_vl"], "family"] == "qwen_vl"
    graphs, _ = load_run_graphs(lib, two_runs["qwen_vl"])
    assert len(graphs) == 6
    for g in graphs:  # 64 x 48 px images at Qwen's own resolution (112 x 140 px): 4 x 5 merged blocks
        assert g.params["language_model"] == "decoder-only" and g.params["num_query_tokens"] is None
        assert g.grid_shape == (4, 5) and g.params["grid"] is None
        np.testing.assert_array_equal(g.C, np.eye(20, dtype=np.float32))
        assert g.method_names == ["attention", "rollout", "relevancy", "gradcam", "occlusion"]
    with lib.driver.session() as s:  # the Example and Region nodes hold the grid: region p at (p // 5, p % 5)
        rows = s.run(
            "MATCH (e:Example {run_id: $r})-[:HAS_REGION]->(x:Region) RETURN e.grid AS grid, e.grid_cols AS cols,"
            " x.index AS p, x.row AS row, x.col AS col",
            r=two_runs["qwen_vl"],
        ).data()
    assert rows and all((d["grid"], d["cols"]) == (4, 5) and (d["row"], d["col"]) == divmod(d["p"], 5) for d in rows)
    wrong = lib.run("wrong_answer_regions", run_id=two_runs["qwen_vl"], limit=100)
    assert wrong.row.between(0, 3).all() and wrong.col.between(0, 4).all()
    graphs, _ = load_run_graphs(lib, two_runs["instructblip"])
    assert len(graphs) == 6
    for g in graphs:  # the Q-Former's 4 queries in front of a Llama prompt
        assert g.params["language_model"] == "decoder-only" and g.params["num_query_tokens"] == 4
        assert g.C.shape == (4, 16) and not np.allclose(g.C, np.eye(4, 16))
        np.testing.assert_allclose(g.C.sum(1), 1.0, atol=1e-5)
        assert g.method_names == ["attention", "rollout", "relevancy", "gradcam", "occlusion"]
    graphs, _ = load_run_graphs(lib, two_runs["llava"])
    assert len(graphs) == 6
    for g in graphs:
        assert g.params["language_model"] == "decoder-only" and g.params["num_query_tokens"] == 16
        np.testing.assert_array_equal(g.C, np.eye(16, dtype=np.float32))
        np.testing.assert_allclose(g.W.sum(1), 1.0, atol=1e-5)
        assert g.method_names == ["attention", "rollout", "relevancy", "gradcam", "occlusion"]
        for name in ("rollout", "relevancy", "gradcam"):
            m = g.methods[name]
            assert m.W.shape == g.W.shape and m.W_pert.shape == (len(g.perturbations), *g.W.shape)
            assert np.isfinite(m.scores["deletion_auc"])


@pytest.mark.parametrize("family", ["llava", "instructblip", "qwen_vl"])
def test_every_template_runs_on_the_new_families_runs(family, two_runs):
    lib, run = two_runs["lib"], two_runs[family]
    example = load_run_graphs(lib, run)[0][0].example_id
    nonempty = 0
    names = [n for n in template_names() if n != "compare_runs"]
    for name in names:
        t = load_template(name)
        kw = {"run_id": run} if t.param("run_id") else {}
        if t.param("example_id"):
            kw["example_id"] = example
        df = lib.run(name, **kw)
        assert isinstance(df, pd.DataFrame), name
        nonempty += len(df) > 0
    assert nonempty >= len(names) - 3  # flips, wrong answers and run_examples may be empty on random weights


def test_compare_runs_pairs_the_two_families_question_by_question(two_runs):
    lib = two_runs["lib"]
    df = lib.run("compare_runs", run_a=two_runs["blip2"], run_b=two_runs["llava"])
    assert len(df) > 0
    blip2, _ = load_run_graphs(lib, two_runs["blip2"])
    llava, _ = load_run_graphs(lib, two_runs["llava"])
    assert {g.example_id for g in blip2} == {g.example_id for g in llava}
    for a, b in (("instructblip", "llava"), ("qwen_vl", "blip2")):
        assert len(lib.run("compare_runs", run_a=two_runs[a], run_b=two_runs[b])) > 0
