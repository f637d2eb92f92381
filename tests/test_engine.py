"""The STCG engine on tiny random BLIP-2 models (real transformers classes, eager attention)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.capture import AttentionCapture, LayerSelection
from stcg_model.engine import STCGEngine, VQAInput
from stcg_model.graph import STCGraph, graphs_equal
from stcg_model.tiny import tiny_blip2

QUESTIONS = ["What color is the shape?", "Is there a red circle?", "what shape is in the image?", "is the triangle blue?"]


def _examples(n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 36 + 5 * i, 48 - 3 * i
        out.append(VQAInput(f"ex{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                            QUESTIONS[i % len(QUESTIONS)], {"question_type": "what color"}))
    return out


@pytest.fixture(scope="module")
def lm():
    return tiny_blip2("t5", seed=3)


@pytest.fixture(scope="module")
def engine(lm):
    return STCGEngine(lm, seed=7, deletion_steps=4)


@pytest.fixture(scope="module")
def graphs(engine):
    return engine.explain(_examples(), batch_size=4)


def test_rows_of_W_and_S_sum_to_one(graphs):
    for g in graphs:
        np.testing.assert_allclose(g.W.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(g.S.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(g.W_pert.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(g.C.sum(1), 1.0, atol=1e-5)
        assert g.W.shape == (len(g.tokens), 16) and g.S.shape[0] == len(g.answer_tokens)
        assert g.dW.shape == (6, len(g.tokens), 16) and g.dp.shape == (6,)
        assert (g.m > 0).all() and (g.m <= 1 + 1e-6).all()


def test_hooks_removed_after_a_forward_that_raises(lm):
    model = lm.model

    def n_hooks():
        return sum(len(m._forward_hooks) for m in model.modules())

    before = n_hooks()
    with pytest.raises(RuntimeError, match="boom"):
        with AttentionCapture(model) as cap:
            assert n_hooks() == before + cap.installed > before
            with cap.recording("qformer.cross"):
                model(pixel_values=torch.randn(1, 3, 32, 32), input_ids=torch.tensor([[5]]),
                      decoder_input_ids=torch.tensor([[0]]))
                raise RuntimeError("boom")
    assert n_hooks() == before


def test_captured_lm_attention_equals_output_attentions(lm, engine):
    ex = engine._prepare(_examples(1)[0])
    rows = [(ex, ex.pixels)]
    answers = [[5, 7, 1]]
    with AttentionCapture(lm.model, "mean") as cap:
        with cap.recording("qformer.cross", "lm.encoder.self"):
            enc, am = engine._encode(rows)
        E = cap.pop("lm.encoder.self")[0].numpy()
        C = cap.pop("qformer.cross")[0].numpy()
        with cap.recording("lm.decoder.cross"):
            engine._teacher_forced(enc, am, answers)
        D = cap.pop("lm.decoder.cross")[0].numpy()
    ids, am = engine._encoder_inputs(rows)
    pv = engine._pixel_values([ex.pixels])
    lm.model.qformer.config.output_attentions = True
    try:
        with torch.no_grad():
            out = lm.model(pixel_values=pv, input_ids=ids, attention_mask=am,
                           decoder_input_ids=torch.tensor([[0, 5, 7]]), output_attentions=True)
    finally:
        lm.model.qformer.config.output_attentions = False
    ref_E = torch.stack(out.language_model_outputs.encoder_attentions).mean(2).mean(0)[0].numpy()
    ref_D = torch.stack(out.language_model_outputs.cross_attentions).mean(2).mean(0)[0].numpy()
    ref_C = torch.stack(out.qformer_outputs.cross_attentions).mean(2).mean(0)[0].numpy()
    np.testing.assert_allclose(E, ref_E, atol=1e-6)
    np.testing.assert_allclose(D, ref_D, atol=1e-6)
    np.testing.assert_allclose(C, ref_C, atol=1e-6)


def test_W_equals_independent_einsum(graphs, engine):
    g = graphs[1]
    Q = engine.Q
    n = len(g.tokens)
    Erows = g.E[Q:Q + n, :Q]
    a = Erows / Erows.sum(1, keepdims=True)
    W = np.einsum("ik,kp->ip", a, g.C)
    np.testing.assert_allclose(g.W, W, atol=1e-6)
    Drows = g.D[:, :Q]
    S = np.einsum("tk,kp->tp", Drows / Drows.sum(1, keepdims=True), g.C)
    np.testing.assert_allclose(g.S, S, atol=1e-6)
    np.testing.assert_allclose(g.step_token, g.D[:, Q:Q + n], atol=1e-7)


def test_teacher_forced_probability_equals_generate(lm, engine, graphs):
    g = graphs[0]
    ex = engine._prepare(_examples(1)[0])
    ids, am = engine._encoder_inputs([(ex, ex.pixels)])
    pv = engine._pixel_values([ex.pixels])
    gen = lm.model.generate(pixel_values=pv, input_ids=ids, attention_mask=am, max_new_tokens=engine.max_new_tokens,
                            do_sample=False, return_dict_in_generate=True, output_scores=True)
    steps = torch.stack([s.float().log_softmax(-1) for s in gen.scores], 1)[0]
    seq = gen.sequences[0, 1:]
    n = len(g.answer_tokens)
    lp = steps[torch.arange(n), seq[:n]].numpy()
    np.testing.assert_allclose(g.step_logprob, lp, atol=1e-5)
    assert g.p_clean == pytest.approx(float(np.exp(lp.sum())), rel=1e-5)


def test_batched_equals_one_by_one(engine, graphs):
    singles = [engine.explain([ex], batch_size=1)[0] for ex in _examples()]
    for a, b in zip(graphs, singles):
        assert a.answer == b.answer and a.perturbed_answers == b.perturbed_answers
        for name in ("C", "W", "S", "dW", "dS", "dC", "p_pert", "dp", "deletion_curve", "deletion_curve_random"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=2e-5, err_msg=name)


def test_save_load_round_trips_exactly(graphs, tmp_path):
    g = graphs[2]
    path = g.save(tmp_path / "g.safetensors")
    back = STCGraph.load(path)
    assert graphs_equal(g, back)
    assert back.meta == {"question_type": "what color"} and back.image_size == g.image_size


def test_networkx_view_matches_arrays(graphs):
    g = graphs[0]
    nxg = g.to_networkx(top_k=3)
    tok0 = [(v, d) for u, v, k, d in nxg.out_edges(("Token", 0), keys=True, data=True) if k == "ATTENDS"]
    assert len(tok0) == 3
    best = max(tok0, key=lambda e: e[1]["weight"])
    assert best[0] == ("Region", int(np.argmax(g.W[0]))) and best[1]["rank"] == 1
    assert nxg.nodes[("Perturbation", "center_mask")]["dW_fro"] == pytest.approx(float(g.dW_fro[0]))


def test_layer_selection_last_differs_from_mean(lm):
    ex = _examples(1)[0]
    mean = STCGEngine(lm, perturbations="center_mask", deletion_steps=0).explain([ex])[0]
    last = STCGEngine(lm, perturbations="center_mask", layers="last", deletion_steps=0).explain([ex])[0]
    assert last.params["layers"] == "last" and mean.params["layers"] == "mean"
    assert not np.allclose(mean.E, last.E)
    assert LayerSelection.parse("0,-1").select(3) == [0, 2]


def test_float16_refused_for_t5():
    from stcg.errors import StcgError

    with pytest.raises(StcgError, match="float16 is refused"):
        tiny_blip2("t5", dtype="float16")


def test_opt_tiny_model_builds_and_generates_but_engine_says_unsupported():
    from stcg.errors import StcgError

    lm = tiny_blip2("opt")
    ids = torch.tensor([[lm.model.config.image_token_id] * 4 + [5, 6, 1]])
    out = lm.model.generate(pixel_values=torch.randn(1, 3, 32, 32), input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    with pytest.raises(StcgError, match="decoder-only"):
        STCGEngine(lm)
