"""The STCG engine on tiny random BLIP-2 models (real transformers classes; capture attention, with
references computed by the whole model in plain eager attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.families.blip2.loading import use_capture_attention
from stcg_model.families.blip2.points import blip2_hook_points
from stcg_model.families.capture import AttentionCapture, LayerSelection
from stcg_model.graph import STCGraph, graphs_equal
from stcg_model.testing.tiny import tiny_blip2

QUESTIONS = [
    "What color is the shape?",
    "Is there a red circle?",
    "what shape is in the image?",
    "is the triangle blue?",
]


def _examples(n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 36 + 5 * i, 48 - 3 * i
        out.append(
            VQAInput(
                f"ex{i}",
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                QUESTIONS[i % len(QUESTIONS)],
                {"question_type": "what color"},
            )
        )
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
        with AttentionCapture(blip2_hook_points(model)) as cap:
            assert n_hooks() == before + cap.installed > before
            with cap.recording("qformer.cross"):
                model(
                    pixel_values=torch.randn(1, 3, 32, 32),
                    input_ids=torch.tensor([[5]]),
                    decoder_input_ids=torch.tensor([[0]]),
                )
                raise RuntimeError("boom")
    assert n_hooks() == before


def test_weights_are_materialised_only_for_modules_being_recorded(lm):
    """Capture attention: SDPA (no weights) everywhere except the selected modules of a recording point."""
    model = lm.model
    layers = [layer.crossattention.attention for layer in model.qformer.encoder.layer]
    assert len(layers) >= 2
    seen: list = []
    handles = [
        m.register_forward_hook(lambda mod, args, out, i=i: seen.append((i, out[1] is not None)))
        for i, m in enumerate(layers)
    ]

    def qformer_pass():
        seen.clear()
        with torch.no_grad():
            model.get_image_features(torch.randn(2, 3, 32, 32))
        return dict(seen)

    try:
        assert qformer_pass() == {i: False for i in range(len(layers))}  # no capture: SDPA
        with AttentionCapture(blip2_hook_points(model), "last") as cap:
            assert qformer_pass() == {i: False for i in range(len(layers))}  # installed, not recording
            with cap.recording("qformer.cross"):
                got = qformer_pass()
            assert got == {i: i == len(layers) - 1 for i in range(len(layers))}  # only the selected layer
            assert cap.pop("qformer.cross").shape[0] == 2
        assert qformer_pass() == {i: False for i in range(len(layers))}  # back to SDPA after exit
    finally:
        for h in handles:
            h.remove()


def test_captured_lm_attention_equals_output_attentions(lm, engine):
    ex = engine._prepare(_examples(1)[0])
    rows = [(ex, ex.pixels)]
    answers = [[5, 7, 1]]
    with AttentionCapture(blip2_hook_points(lm.model), "mean") as cap:
        with cap.recording("qformer.cross", "lm.encoder.self"):
            enc, am = engine._encode(rows)
        E = cap.pop("lm.encoder.self")[0].numpy()
        C = cap.pop("qformer.cross")[0].numpy()
        with cap.recording("lm.decoder.cross"):
            engine._teacher_forced(enc, am, answers)
        D = cap.pop("lm.decoder.cross")[0].numpy()
    ids, am = engine._encoder_inputs(rows)
    pv = engine._pixel_values([ex.pixels])
    # the reference: the whole model in plain eager attention (ours runs SDPA wherever no weights are read)
    lm.model.set_attn_implementation("eager")
    lm.model.qformer.config.output_attentions = True
    try:
        with torch.no_grad():
            out = lm.model(
                pixel_values=pv,
                input_ids=ids,
                attention_mask=am,
                decoder_input_ids=torch.tensor([[0, 5, 7]]),
                output_attentions=True,
            )
    finally:
        lm.model.qformer.config.output_attentions = False
        use_capture_attention(lm.model)
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
    Erows = g.E[Q : Q + n, :Q]
    a = Erows / Erows.sum(1, keepdims=True)
    W = np.einsum("ik,kp->ip", a, g.C)
    np.testing.assert_allclose(g.W, W, atol=1e-6)
    Drows = g.D[:, :Q]
    S = np.einsum("tk,kp->tp", Drows / Drows.sum(1, keepdims=True), g.C)
    np.testing.assert_allclose(g.S, S, atol=1e-6)
    np.testing.assert_allclose(g.step_token, g.D[:, Q : Q + n], atol=1e-7)


def test_teacher_forced_probability_equals_generate(lm, engine, graphs):
    g = graphs[0]
    ex = engine._prepare(_examples(1)[0])
    ids, am = engine._encoder_inputs([(ex, ex.pixels)])
    pv = engine._pixel_values([ex.pixels])
    gen = lm.model.generate(
        pixel_values=pv,
        input_ids=ids,
        attention_mask=am,
        max_new_tokens=engine.max_new_tokens,
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
    )
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


@pytest.fixture(scope="module")
def opt_engine():
    eng = STCGEngine(tiny_blip2("opt", seed=5), seed=7, deletion_steps=3, prompt="{question}")
    eng.min_new_tokens = 3  # random weights: force multi-step answers so steps are tested
    return eng


def _opt_reference(eng, ex, answer):
    """Full-model forward on [slots | prompt | answer[:-1]] with output_attentions (no hooks)."""
    model = eng.model
    ids = torch.tensor([[eng.image_token_id] * eng.Q + ex.token_ids + answer[:-1]])
    pv = eng._pixel_values([ex.pixels])
    model.set_attn_implementation("eager")  # the reference: plain eager attention everywhere
    try:
        with torch.no_grad():
            out = model(pixel_values=pv, input_ids=ids, output_attentions=True)
    finally:
        use_capture_attention(model)
    att = torch.stack(out.language_model_outputs.attentions).mean(2).mean(0)[0].numpy()
    return att, out.logits[0].float().log_softmax(-1)


def test_opt_engine_matches_output_attentions_and_generate(opt_engine):
    eng = opt_engine
    ex_in = _examples(2)[1]
    g = eng.explain([ex_in])[0]
    ex = eng._prepare(ex_in)
    L = eng.Q + len(ex.token_ids)
    # greedy answer and its step probabilities equal BLIP-2's own generate (3 <= steps <= max_new_tokens)
    ids = torch.tensor([[eng.image_token_id] * eng.Q + ex.token_ids])
    gen = eng.model.generate(
        pixel_values=eng._pixel_values([ex.pixels]),
        input_ids=ids,
        max_new_tokens=eng.max_new_tokens,
        min_new_tokens=3,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    new = gen.sequences[0, ids.shape[1] :].tolist()
    answer = eng._trim_answer(new)
    assert len(answer) == len(g.answer_tokens) >= 3
    steps = torch.stack([s.float().log_softmax(-1) for s in gen.logits], 1)[
        0
    ]  # raw logits: min_new_tokens only masks </s>
    np.testing.assert_allclose(
        g.step_logprob, steps[torch.arange(len(answer)), torch.tensor(answer)].numpy(), atol=1e-5
    )
    # E and D are slices of the causal self-attention of one forward over [slots | prompt | answer[:-1]]
    att, logp = _opt_reference(eng, ex, answer)
    np.testing.assert_allclose(g.E, att[:L, :L], atol=1e-6)
    np.testing.assert_allclose(g.D, att[L - 1 : L - 1 + len(answer), :L], atol=1e-6)
    np.testing.assert_allclose(
        g.step_logprob, logp[torch.arange(L - 1, L - 1 + len(answer)), torch.tensor(answer)].numpy(), atol=1e-5
    )
    # W and S from them, as for T5
    Q, n = eng.Q, len(g.tokens)
    a = g.E[Q : Q + n, :Q] / g.E[Q : Q + n, :Q].sum(1, keepdims=True)
    np.testing.assert_allclose(g.W, a @ g.C, atol=1e-6)
    b = g.D[:, :Q] / g.D[:, :Q].sum(1, keepdims=True)
    np.testing.assert_allclose(g.S, b @ g.C, atol=1e-6)
    np.testing.assert_allclose(g.W.sum(1), 1.0, atol=1e-5)
    assert g.params["language_model"] == "decoder-only" and (g.v > 0).all() and (g.v < 1).all()


def test_opt_batched_equals_one_by_one(opt_engine):
    exs = _examples(4)  # different question lengths -> left padding in generate, right padding when teacher-forced
    batched = opt_engine.explain(exs, batch_size=4)
    for ex, a in zip(exs, batched):
        b = opt_engine.explain([ex])[0]
        assert a.answer_tokens == b.answer_tokens and a.perturbed_answers == b.perturbed_answers
        for name in ("C", "E", "W", "S", "dW", "p_pert", "deletion_curve", "deletion_curve_random"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=2e-5, err_msg=name)


def test_prompt_template_words_are_context_not_tokens():
    eng = STCGEngine(tiny_blip2("opt", seed=5), perturbations="center_mask", deletion_steps=0)
    assert eng.prompt == "Question: {question} Answer:"
    g = eng.explain([_examples(1)[0]])[0]
    assert g.words == ["What", "color", "is", "the", "shape", "?"] and len(g.tokens) == 6
    ex = eng._prepare(_examples(1)[0])
    assert len(ex.token_ids) > len(g.tokens)  # "Question:", "Answer:" (and </s>) are in the prompt, not Token nodes
    assert g.E.shape == (eng.Q + len(ex.token_ids),) * 2
    from stcg.errors import StcgError

    with pytest.raises(StcgError, match="exactly once"):
        STCGEngine(eng.lm, prompt="no placeholder")


def test_fast_pixel_path_equals_the_processor(lm):
    """The engine's batched BLIP preprocessing gives the processor's own tensors (resize included)."""
    from stcg.images import quantise as to_uint8
    from stcg.images import to_image
    from stcg_model.engine.core import FastBlipPixels

    proc = lm.processor.image_processor
    fast = FastBlipPixels.for_processor(proc)
    assert fast is not None and (fast.height, fast.width) == (32, 32)
    rng = np.random.default_rng(3)
    arrays = [rng.random((h, w, 3)).astype(np.float32) for h, w in [(32, 32), (50, 41), (17, 90)]]
    ref = proc(images=[to_image(a) for a in arrays], return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(fast([to_uint8(a) for a in arrays]).numpy(), ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(fast(arrays).numpy(), ref.numpy(), atol=1e-6)  # float input, quantised the same way
    same = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(3)]  # the batched all-float path
    ref = proc(images=[to_image(a) for a in same], return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(fast(same).numpy(), ref.numpy(), atol=1e-6)


def test_prefetch_and_host_threads_change_nothing(lm, graphs):
    """What a GPU run does (next batch prepared in the background, images on 3 threads) gives the same STCGs."""
    eng = STCGEngine(lm, seed=7, deletion_steps=4, host_workers=3)
    eng.prefetch = True
    out = eng.explain(_examples(), batch_size=2)
    for a, b in zip(graphs, out):
        assert a.answer == b.answer and a.perturbed_answers == b.perturbed_answers
        for name in ("C", "W", "S", "dW", "p_pert", "deletion_curve"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=2e-5, err_msg=name)


def test_decoding_reuses_the_greedy_pass_and_equals_generate_plus_teacher_forcing(engine):
    """The last full-prefix greedy pass stands in for teacher forcing where a row's greedy answer is
    its target; the result equals HF generate + a separate teacher-forced pass for every row."""
    host = engine.prepare_batch(_examples(4, seed=2))
    with AttentionCapture(blip2_hook_points(engine.model), engine.layers) as cap:
        enc, am = engine._encode(host.rows, host.pixel_values)
        greedy = engine._greedy(encoder_outputs=enc, attention_mask=am, decoder_start_token_id=engine.start_id)
        targets = [list(g) for g in greedy]
        targets[1], targets[4] = [5, 7, 1], [9, 1]  # rows whose target is not their greedy answer
        with cap.recording("lm.decoder.cross"):
            lp = engine._teacher_forced(enc, am, targets)
        D = cap.pop("lm.decoder.cross").numpy()
    res = engine._run_pass(host.rows, answers=targets, per_example=1, pv=host.pixel_values)
    assert res.greedy == greedy
    redone = sum(g != t for g, t in zip(greedy, targets))
    assert 0 < redone < len(greedy)
    for r, (ex, _) in enumerate(host.rows):
        L = engine.Q + len(ex.token_ids)
        np.testing.assert_allclose(res.step_logprob[r], lp[r], atol=1e-5)
        np.testing.assert_allclose(res.D[r], D[r, : len(targets[r]), :L], atol=1e-6)


def test_forced_answer_length_leaves_the_step_probabilities_raw():
    """Benchmarks force answers of max_new_tokens steps (min_new_tokens = max_new_tokens): the
    </s> ban steers decoding only; the step log p stay the model's raw teacher-forced ones.
    (Seed 1 gives </s> enough mass at the last step for a banned-logit leak to show.)"""
    eng = STCGEngine(tiny_blip2("t5", seed=1), seed=7, deletion_steps=0, max_new_tokens=1, perturbations="center_mask")
    eng.min_new_tokens = 1
    host = eng.prepare_batch(_examples(4, seed=2))
    res = eng._run_pass(host.rows, answers=None, per_example=1, pv=host.pixel_values)
    assert all(g[0] != eng.eos_id for g in res.greedy)  # the ban was in force at step 0
    with AttentionCapture(blip2_hook_points(eng.model), eng.layers):
        enc, am = eng._encode(host.rows, host.pixel_values)
        lp = eng._teacher_forced(enc, am, res.greedy)
    for r in range(len(host.rows)):
        np.testing.assert_allclose(res.step_logprob[r], lp[r], atol=1e-5)


@pytest.mark.parametrize("q,k", [(3, 3), (2, 5)])
def test_eager_mask_for_an_unmasked_causal_module_matches_sdpa(q, k):
    """No mask on a causal module: the eager branch's mask reproduces SDPA's is_causal result,
    including its top-left alignment when there are more keys than queries (static-cache prefill)."""
    from torch import nn

    from stcg_model.families.capture import _additive_mask

    g = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, 2, n, 4, generator=g) for n in (q, k, k))
    module = nn.Module()
    module.is_causal = True
    mask = _additive_mask(module, query, key, None)
    eager = ((query @ key.transpose(-1, -2)) / 2 + mask).softmax(-1) @ value
    sdpa = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
    torch.testing.assert_close(eager, sdpa, atol=1e-6, rtol=1e-5)
    module.is_causal = False
    assert _additive_mask(module, query, key, None) is None


def test_zero_answer_steps_refused_with_one_line(lm):
    from stcg.errors import StcgError

    with pytest.raises(StcgError, match="--max-new-tokens 0 is invalid; allowed: an integer >= 1"):
        STCGEngine(lm, max_new_tokens=0)
