"""Per-method explanations travel with the STCGraph: save/load, the file store, and the attention view."""

from __future__ import annotations

import numpy as np
import pytest

from stcg.filestore import FileStore
from stcg_model.graph import MethodResult, STCGraph, graphs_equal
from stcg_model.testing.synthetic import synthetic_graph


def _with_methods(g: STCGraph) -> STCGraph:
    rng = np.random.default_rng(0)
    n, P, T, K = len(g.tokens), g.num_regions, len(g.answer_tokens), len(g.perturbations)
    rel = MethodResult(
        region=rng.dirichlet(np.ones(P)),
        C=rng.dirichlet(np.ones(P), size=g.C.shape[0]),
        W=rng.dirichlet(np.ones(P), size=n),
        S=rng.dirichlet(np.ones(P), size=T),
        W_pert=rng.dirichlet(np.ones(P), size=(K, n)),
        region_pert=rng.dirichlet(np.ones(P), size=K),
        scores={"deletion_ratio": 0.8, "insertion_ratio": 1.2},
    )
    occ = MethodResult(
        region=rng.dirichlet(np.ones(P)), S=rng.dirichlet(np.ones(P), size=T), scores={"sufficiency": 0.1}
    )
    g.methods = {
        "attention": MethodResult(region=g.attribution, scores={"insertion_auc": 0.5}),
        "relevancy": rel,
        "occlusion": occ,
    }
    return g


def test_methods_round_trip_through_a_file_and_the_store(tmp_path):
    g = _with_methods(synthetic_graph("ex1", np.random.default_rng(3)))
    back = STCGraph.load(g.save(tmp_path / "g.safetensors"))
    assert graphs_equal(g, back)
    assert back.method_names == ["attention", "relevancy", "occlusion"]
    np.testing.assert_array_equal(back.method("relevancy").W_pert, np.float32(g.methods["relevancy"].W_pert))
    assert back.method("occlusion").W is None and back.method("occlusion").C is None
    assert back.method("attention").scores == {"insertion_auc": 0.5}
    store = FileStore.create(tmp_path / "store", "run1")
    ref = store.write_shard([g.to_record()])["ex1"]
    again = STCGraph.from_parts(*FileStore.open(tmp_path / "store", "run1").read(ref["shard"], ref["key"]))
    assert graphs_equal(g, again)


def test_attention_view_is_the_main_arrays_and_dW_under_a_method():
    g = _with_methods(synthetic_graph("ex2", np.random.default_rng(4)))
    att = g.method("attention")
    assert att.W is g.W and att.region is g.attribution
    np.testing.assert_allclose(att.dW_fro, g.dW_fro, rtol=1e-5)  # |W - W_pert|_F is the graph's |dW|_F
    rel = g.method("relevancy")
    expect = np.sqrt(((rel.W[None] - rel.W_pert) ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(rel.dW_fro, expect)
    assert g.method("occlusion").dW_fro is None
    with pytest.raises(KeyError):
        g.method("gradcam")


def test_a_graph_without_methods_is_stored_as_before(tmp_path):
    g = synthetic_graph("ex3", np.random.default_rng(5))
    assert not any(k.startswith("method/") for k in g.arrays()) and "method_scores" not in g._meta_dict()
    assert graphs_equal(g, STCGraph.load(g.save(tmp_path / "g.safetensors")))


def test_per_method_summary_equals_a_direct_computation():
    from scipy import stats

    from stcg_model.maths.regions import top_fraction
    from stcg_model.statistics.metrics import METHOD_METRICS, summarise_methods
    from stcg_model.testing.synthetic import add_ground_truth

    rng = np.random.default_rng(7)
    graphs = []
    for i in range(12):
        g = _with_methods(synthetic_graph(f"e{i}", np.random.default_rng(i)))
        for m in g.methods.values():  # distinct scores per example
            m.scores = {
                k: float(rng.uniform(0.1, 1.0))
                for k in (
                    "deletion_auc",
                    "deletion_auc_random",
                    "insertion_auc",
                    "insertion_auc_random",
                    "comprehensiveness",
                    "sufficiency",
                )
            }
        if i < 8:  # 8 of the 12 examples carry a ground-truth mask
            add_ground_truth(g, rng)
        graphs.append(g)
    out = summarise_methods(graphs, n_boot=200)
    assert list(out) == ["attention", "relevancy", "occlusion"]
    rel = out["relevancy"]
    assert list(rel) == list(METHOD_METRICS)
    masked = [g.methods["relevancy"].scores for g in graphs[:8]]
    for k in ("mass_accuracy", "rank_accuracy", "pointing_game", "chance"):  # over the masked examples only
        assert rel[k].value == pytest.approx(np.mean([s[k] for s in masked])) and rel[k].n == 8, k
    sc = [g.methods["relevancy"].scores for g in graphs]
    ratio = np.mean([s["deletion_auc"] for s in sc]) / np.mean([s["deletion_auc_random"] for s in sc])
    assert rel["deletion_ratio"].value == pytest.approx(ratio)
    assert rel["sufficiency"].value == pytest.approx(np.mean([s["sufficiency"] for s in sc]))
    x = np.concatenate([g.method("relevancy").dW_fro for g in graphs])
    y = np.abs(np.concatenate([g.dp for g in graphs]))
    assert rel["causal_faithfulness_pearson"].value == pytest.approx(stats.pearsonr(x, y)[0])
    k = graphs[0].perturbation_index("gaussian_noise")
    jac = []
    for g in graphs:
        a = set(top_fraction(g.methods["relevancy"].region, 0.1).tolist())
        b = set(top_fraction(g.methods["relevancy"].region_pert[k], 0.1).tolist())
        jac.append(len(a & b) / len(a | b))
    assert rel["jaccard_stability"].value == pytest.approx(np.mean(jac))
    assert rel["deletion_ratio"].low <= rel["deletion_ratio"].value <= rel["deletion_ratio"].high
    # occlusion has no W: no causal faithfulness, no stability without region_pert
    assert "causal_faithfulness_pearson" not in out["occlusion"] and "jaccard_stability" not in out["occlusion"]
    # attention: dW under the method is the graph's own |dW|_F
    att_x = np.concatenate([g.dW_fro for g in graphs])
    assert out["attention"]["causal_faithfulness_pearson"].value == pytest.approx(stats.pearsonr(att_x, y)[0], rel=1e-5)
