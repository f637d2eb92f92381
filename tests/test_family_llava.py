"""The LLaVA family (``LlavaForConditionalGeneration``, and ``VipLlavaForConditionalGeneration``: every test runs
on both) on tiny random models of the real classes (CLIP vision tower, Llama language model, a word-level tokenizer whose ``<image>`` is one token, LLaVA-1.5's
chat template), checked against computations written here from docs/spec.md section 8: the image slots
sit inside the template, one per patch, ``C`` is the identity, ``E`` and ``D`` are the causal
self-attention of the prompt and of the positions predicting the answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.attribution.base import get_attribution
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.llava.loading import use_capture_attention
from stcg_model.families.registry import family_for
from stcg_model.testing.tiny import tiny_llava
from tests.attribution_reference import reference_copy
from tests.family_checks import (
    assert_batched_equals_one_by_one,
    assert_engine_batched_equals_one_by_one,
    assert_equals_reference,
    assert_occlusion_finds,
    attribution_batch,
    planted_images,
)

QUESTIONS = ["What color is the shape?", "is the triangle blue?", "what shape is in the image?"]
SEED = 3


def _examples(n: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[VQAInput]:
    rng = np.random.default_rng(seed)
    h, w = size
    return [
        VQAInput(f"ll{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), QUESTIONS[i % 3])
        for i in range(n)
    ]


@pytest.fixture(scope="module", params=["llava", "vipllava"])
def llava(request):
    """A tiny LLaVA, and a tiny VipLlava (the same family: patch features of several vision layers)."""
    lm = tiny_llava(seed=SEED, vip=request.param == "vipllava")
    eng = STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    eng.min_new_tokens = 2  # random weights: force multi-step answers so steps are tested
    return lm, eng


@pytest.fixture(scope="module", params=["llava", "vipllava"])
def llava64(request):
    """Float64 copies for the planted-region check: float32 arithmetic on CPU varies with a batch's shape
    (the head runs on the answer rows only), and a random model's drops in log p are small."""
    lm = tiny_llava(seed=SEED, dtype=torch.float64, vip=request.param == "vipllava")
    return lm, STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))


def _ids(eng, graph) -> list[int]:
    return [int(i) for i in eng.tokenizer.convert_tokens_to_ids(graph.answer_tokens)]


def _reference_attention(model, pv, ids):
    """Head- and layer-mean causal self-attention (N, N) of one eager forward with ``output_attentions``
    (no hooks), and the (N, V) log-probabilities."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(pixel_values=pv, input_ids=torch.tensor([ids]), output_attentions=True)
    finally:
        use_capture_attention(model)
    att = torch.stack(out.attentions).mean(2).mean(0)[0].double().numpy()
    return att, out.logits[0].double().log_softmax(-1)


def test_the_family_is_detected_and_its_prompt_is_the_chat_template(llava):
    lm, eng = llava
    assert family_for(lm).__name__ == "stcg_model.families.llava.family"
    assert eng.prompt == "USER: <image>\n{question} ASSISTANT:"
    assert eng.Q == eng.grid_side**2 == 16 and eng.passes.kind == "decoder-only"
    ex = eng._prepare(_examples(1)[0])
    ids = eng.passes.prompt_ids(ex)
    slots = np.flatnonzero(np.asarray(ids) == lm.model.config.image_token_id)
    # the slots sit inside the template, after "<s> user :", as LLaVA's processor puts them
    assert len(slots) == 16 and slots[0] == 3 and (np.diff(slots) == 1).all()
    text = lm.processor(
        images=[Image.fromarray(ex.pixels)], text=eng.prompt.format(question=ex.ex.question), return_tensors="pt"
    )
    assert text["input_ids"][0].tolist() == ids  # the real processor expands <image> the same way
    pos = eng.passes.question_positions(ex)
    words = eng.tokenizer.convert_ids_to_tokens([ids[p] for p in pos])
    assert words == ["what", "color", "is", "the", "shape", "?"]


def test_engine_arrays_equal_output_attentions_and_rows_sum_to_1(llava):
    lm, eng = llava
    # the first example with a multi-step answer (a random model may end early with padding)
    g, ex_in = next((g, e) for g, e in zip(eng.explain(_examples(6)), _examples(6)) if len(g.answer_tokens) >= 2)
    ex = eng._prepare(ex_in)
    answer = _ids(eng, g)
    prompt = eng.passes.prompt_ids(ex)
    L = len(prompt)
    slots = np.flatnonzero(np.asarray(prompt) == lm.model.config.image_token_id)
    att, logp = _reference_attention(lm.model, eng._pixel_values([ex.pixels]), prompt + answer[:-1])
    np.testing.assert_allclose(g.E, att[:L, :L], atol=1e-6)
    np.testing.assert_allclose(g.D, att[L - 1 : L - 1 + len(answer), :L], atol=1e-6)
    np.testing.assert_allclose(
        g.step_logprob, logp[torch.arange(L - 1, L - 1 + len(answer)), torch.tensor(answer)].numpy(), atol=1e-5
    )
    # section 8: C is the identity, W the renormalised attention of each question token to the slots
    np.testing.assert_array_equal(g.C, np.eye(16, dtype=np.float32))
    pos = np.array([p for p in range(L) if prompt[p] != lm.model.config.image_token_id])
    q_pos = pos[[i for i, p in enumerate(pos) if ex.offsets[p - (15 if p > slots[0] else 0)] != (0, 0)]]
    rows = att[np.ix_(q_pos, slots)]
    np.testing.assert_allclose(g.W, rows / rows.sum(1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(g.m, rows.sum(1), atol=1e-6)
    steps = att[np.ix_(L - 1 + np.arange(len(answer)), slots)]
    np.testing.assert_allclose(g.S, steps / steps.sum(1, keepdims=True), atol=1e-6)
    for name in ("W", "S"):
        np.testing.assert_allclose(getattr(g, name).sum(1), 1.0, atol=1e-5)
    assert (g.m > 0).all() and (g.m < 1).all() and g.params["language_model"] == "decoder-only"


def test_greedy_answer_equals_llavas_own_generate(llava):
    lm, eng = llava
    ex_in = _examples(3)[2]
    g = eng.explain([ex_in])[0]
    ex = eng._prepare(ex_in)
    enc = lm.processor(
        images=[Image.fromarray(ex.pixels)], text=eng.prompt.format(question=ex.ex.question), return_tensors="pt"
    )
    gen = lm.model.generate(
        **enc, max_new_tokens=eng.max_new_tokens, min_new_tokens=2, do_sample=False, pad_token_id=eng.pad_id
    )
    assert eng.passes.trim_answer(gen[0, enc["input_ids"].shape[1] :].tolist()) == _ids(eng, g)


def test_batched_equals_one_by_one_and_perturbed_passes_align(llava):
    lm, eng = llava
    exs = _examples(4)  # different question lengths: left padding in generate, right when teacher-forced
    batched = assert_engine_batched_equals_one_by_one(eng, exs)
    for g in batched:  # every perturbation teacher-forces the clean answer: its step arrays have the clean steps
        assert g.dS.shape == (len(g.perturbations), len(g.answer_tokens), 16) and g.dW.shape[1:] == g.W.shape


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_rollout_and_relevancy_equal_the_independent_reference(method, llava):
    lm, eng = llava
    batch = attribution_batch(eng, _examples(2, seed=5), [[5, 7, 9, 1], [9, 1]])
    assert_equals_reference(method, lm, eng, batch)


@pytest.mark.parametrize("method", ["attention", "rollout", "relevancy", "gradcam", "occlusion"])
def test_methods_batched_equal_one_by_one_and_are_normalised(method, llava):
    lm, eng = llava
    batch = attribution_batch(eng, _examples(3), [[5, 7, 1], [9, 1], [11, 4, 6, 8, 1]])
    assert_batched_equals_one_by_one(method, lm, batch)


def test_attention_method_equals_the_engines_arrays(llava):
    lm, eng = llava
    exs = _examples(2)
    graphs = eng.explain(exs)
    batch = attribution_batch(eng, exs, [_ids(eng, g) for g in graphs])
    for g, m in zip(graphs, get_attribution("attention").compute(lm, batch)):
        np.testing.assert_allclose(m.W, g.W, atol=1e-5)
        np.testing.assert_allclose(m.S, g.S, atol=1e-5)
        np.testing.assert_allclose(m.region, g.attribution, atol=1e-5)


def test_occlusion_ranks_a_planted_region_first(llava64):
    """A grey image with one coloured patch: greying any other block leaves the image as it was, so only
    the planted block can move the answer's probability. The answer explained is the token whose log p
    the planted patch raises most over the all-grey image (computed here by an independent forward)."""
    lm, eng = llava64
    img, grey, region = planted_images(eng, 32)
    ex = VQAInput("planted", Image.fromarray(img), "what color is the shape?")
    prompt = eng.passes.prompt_ids(eng._prepare(ex))
    ref = reference_copy(lm.model, torch.float64)
    with torch.no_grad():
        ids = torch.tensor([prompt] * 2)
        logits = ref(pixel_values=eng._pixel_values([img, grey]), input_ids=ids).logits[:, len(prompt) - 1]
    gain = logits.log_softmax(-1)[0] - logits.log_softmax(-1)[1]
    token = int(torch.argmax(gain))
    assert gain[token] > 0
    batch = attribution_batch(eng, [ex], [[token]], images=[img])
    assert_occlusion_finds(region, lm, batch)


def test_sanity_cascade_reinitialises_the_language_model_top_down(llava):
    from stcg_model.attribution.sanity import cascade, randomised_copy

    lm, _ = llava
    order = cascade(lm.model)
    assert order[0] is lm.model.lm_head and order[-1] is lm.model.model.multi_modal_projector
    copy = randomised_copy(lm, stages=2, seed=0)
    w0 = lm.model.model.language_model.layers[-1].self_attn.q_proj.weight
    w1 = copy.model.model.language_model.layers[-1].self_attn.q_proj.weight
    assert not torch.equal(w0, w1)
    assert torch.equal(
        lm.model.model.language_model.layers[0].self_attn.q_proj.weight,
        copy.model.model.language_model.layers[0].self_attn.q_proj.weight,
    )


def test_greedy_decoding_never_emits_the_image_placeholder():
    """A model whose head prefers ``<image>`` above every word: fed back as an answer token the placeholder
    would open an image slot with no image (LLaVA's forward then fails), so decoding bans it."""
    lm = tiny_llava(seed=SEED)
    image_id = lm.model.config.image_token_id
    with torch.no_grad():
        lm.model.lm_head.bias = torch.nn.Parameter(torch.zeros(lm.model.lm_head.out_features))
        lm.model.lm_head.bias[image_id] = 1e4
    eng = STCGEngine.from_config(lm, EngineConfig(deletion_steps=0, max_new_tokens=3, perturbations="center_mask"))
    g = eng.explain(_examples(2))[0]
    ids = _ids(eng, g)
    assert image_id not in ids and len(ids) == 3


def test_an_answer_id_beyond_the_tokenizer_is_shown_not_fatal():
    """llava-1.5's embedding table is padded past its tokenizer (32064 rows, 32002 tokens): a model may emit
    an id the tokenizer has no string for. The graph shows it as ``<id N>`` instead of failing."""
    lm = tiny_llava(seed=SEED)
    n = len(lm.processor.tokenizer)
    lm.model.resize_token_embeddings(n + 8)
    with torch.no_grad():
        lm.model.lm_head.bias = torch.nn.Parameter(torch.zeros(n + 8))
        lm.model.lm_head.bias[n + 3] = 1e4
    eng = STCGEngine.from_config(lm, EngineConfig(deletion_steps=0, max_new_tokens=2, perturbations="center_mask"))
    g = eng.explain(_examples(1))[0]
    assert g.answer_tokens == [f"<id {n + 3}>"] * 2 and g.W.shape[1] == 16


def test_a_saved_vipllava_checkpoint_loads_as_the_llava_family(tmp_path):
    from stcg_model.families.loading import load_model

    lm = tiny_llava(seed=SEED, vip=True)
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    back = load_model(str(tmp_path), device="cpu")
    assert type(back.model).__name__ == "VipLlavaForConditionalGeneration"
    assert family_for(back).__name__ == "stcg_model.families.llava.family"
    cfg = EngineConfig(seed=7, deletion_steps=2, max_new_tokens=3)
    for a, b in zip(
        STCGEngine.from_config(lm, cfg).explain(_examples(2)), STCGEngine.from_config(back, cfg).explain(_examples(2))
    ):
        assert a.answer == b.answer
        np.testing.assert_allclose(a.W, b.W, atol=1e-6)
