"""The Qwen-VL family (``Qwen2_5_VLForConditionalGeneration`` and ``Qwen2VLForConditionalGeneration``) on tiny
random models of the real classes (windowed ViT with a 2 x 2 patch merger, Qwen2 language model with
multimodal rotary positions and grouped-query attention), a word-level tokenizer holding Qwen's special
tokens and Qwen-Instruct's chat template. Checked against computations written here from docs/spec.md
section 8 and against the model's own forward and ``generate`` on the processor's inputs: the image tokens
sit inside the template, one per merged block, ``C`` is the identity, and the positions the passes give
are the model's own M-RoPE positions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.qwen_vl.loading import use_capture_attention
from stcg_model.families.registry import family_for
from stcg_model.testing.tiny import tiny_qwen_vl
from tests.attribution_reference import reference_copy
from tests.family_checks import (
    assert_batched_equals_one_by_one,
    assert_engine_batched_equals_one_by_one,
    assert_equals_reference,
    assert_occlusion_finds,
    attribution_batch,
    planted_images,
    qwen_generate_ids,
)

QUESTIONS = ["What color is the shape?", "is the triangle blue?", "what shape is in the image?"]
SEED = 3
SIDE = 112  # 8 x 8 patches of 14 px, 4 x 4 merged blocks: 16 regions and 16 image tokens


def _examples(n: int, seed: int = 0, size: tuple[int, int] = (SIDE, SIDE)) -> list[VQAInput]:
    rng = np.random.default_rng(seed)
    h, w = size
    return [
        VQAInput(f"qw{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), QUESTIONS[i % 3])
        for i in range(n)
    ]


@pytest.fixture(scope="module", params=["2.5", "2"])
def qwen(request):
    lm = tiny_qwen_vl(request.param, seed=SEED)
    eng = STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    eng.min_new_tokens = 2  # random weights: force multi-step answers so steps are tested
    return lm, eng


@pytest.fixture(scope="module", params=["2.5", "2"])
def qwen64(request):
    """Float64 copies for occlusion: drops in log p of a random model are small, and float32 arithmetic on
    CPU varies with a row's place in the batch."""
    lm = tiny_qwen_vl(request.param, seed=SEED, dtype=torch.float64)
    return lm, STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))


def _ids(eng, graph) -> list[int]:
    return [int(i) for i in eng.tokenizer.convert_tokens_to_ids(graph.answer_tokens)]


def _processor_inputs(lm, eng, ex):
    return lm.processor(
        images=[Image.fromarray(ex.pixels)], text=eng.prompt.format(question=ex.ex.question), return_tensors="pt"
    )


def test_the_family_is_detected_and_rows_are_the_processors_inputs(qwen):
    lm, eng = qwen
    assert family_for(lm).__name__ == "stcg_model.families.qwen_vl.family"
    assert eng.prompt.endswith(
        "<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert eng.Q == eng.grid_side**2 == 16 and eng.passes.kind == "decoder-only"
    ex = eng._prepare(_examples(1)[0])
    ids = eng.passes.prompt_ids(ex)
    enc = _processor_inputs(lm, eng, ex)
    assert enc["input_ids"][0].tolist() == ids  # the processor expands <|image_pad|> to the same 16 slots
    assert enc["image_grid_thw"].tolist() == [[1, 8, 8]]
    pv = eng._pixel_values([ex.pixels])
    assert pv.shape == (1, 64, 3 * 2 * 14 * 14)  # one row of 64 patches
    np.testing.assert_allclose(pv.reshape(64, -1).numpy(), enc["pixel_values"].numpy(), atol=1e-6)
    words = eng.tokenizer.convert_ids_to_tokens([ids[p] for p in eng.passes.question_positions(ex)])
    assert words == ["what", "color", "is", "the", "shape", "?"]


def test_a_non_square_image_is_resized_to_the_square_grid(qwen):
    lm, eng = qwen
    ex = eng._prepare(_examples(1, size=(60, 150))[0])
    assert eng._pixel_values([ex.pixels]).shape == (1, 64, 1176)
    assert ex.grid.num_regions == 16 and ex.grid.boxes()[-1][2:].tolist() == [150, 60]  # boxes in the image's pixels


def _reference_attention(model, enc, answer):
    """Head- and layer-mean causal self-attention (N, N) of one eager forward of the model on the processor's
    inputs (its own M-RoPE positions from ``mm_token_type_ids``), and the (N, V) log-probabilities."""
    ids = torch.cat([enc["input_ids"], torch.tensor([answer[:-1]])], 1)
    mm = torch.cat([enc["mm_token_type_ids"], torch.zeros(1, len(answer) - 1, dtype=torch.long)], 1)
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=mm,
                pixel_values=enc["pixel_values"],
                image_grid_thw=enc["image_grid_thw"],
                output_attentions=True,
            )
    finally:
        use_capture_attention(model)
        model.model.rope_deltas = None
    att = torch.stack(out.attentions).mean(2).mean(0)[0].double().numpy()
    return att, out.logits[0].double().log_softmax(-1)


def test_engine_arrays_equal_the_models_own_forward_and_rows_sum_to_1(qwen):
    lm, eng = qwen
    # the first example with a multi-step answer (a random model may end early with <|endoftext|>)
    g, ex_in = next((g, e) for g, e in zip(eng.explain(_examples(6)), _examples(6)) if len(g.answer_tokens) >= 2)
    ex = eng._prepare(ex_in)
    answer = _ids(eng, g)
    prompt = eng.passes.prompt_ids(ex)
    L = len(prompt)
    slots = np.flatnonzero(np.asarray(prompt) == lm.model.config.image_token_id)
    att, logp = _reference_attention(lm.model, _processor_inputs(lm, eng, ex), answer)
    np.testing.assert_allclose(g.E, att[:L, :L], atol=1e-6)
    np.testing.assert_allclose(g.D, att[L - 1 : L - 1 + len(answer), :L], atol=1e-6)
    steps = torch.arange(L - 1, L - 1 + len(answer))
    np.testing.assert_allclose(g.step_logprob, logp[steps, torch.tensor(answer)].numpy(), atol=1e-5)
    # section 8: C is the identity, W the renormalised attention of each question token to the slots
    np.testing.assert_array_equal(g.C, np.eye(16, dtype=np.float32))
    pos = eng.passes.question_positions(ex)
    rows = att[np.ix_(pos, slots)]
    np.testing.assert_allclose(g.W, rows / rows.sum(1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(g.m, rows.sum(1), atol=1e-6)
    srows = att[np.ix_(L - 1 + np.arange(len(answer)), slots)]
    np.testing.assert_allclose(g.S, srows / srows.sum(1, keepdims=True), atol=1e-6)


def test_the_passes_positions_are_mrope_and_plain_positions_would_differ(qwen):
    """The passes give Qwen's multimodal positions explicitly: equal to ``get_rope_index`` on the processor's
    inputs, and the answer's log p with text positions (what a pass on embeddings gets by default) differs."""
    lm, eng = qwen
    ex = eng._prepare(_examples(1)[0])
    enc = _processor_inputs(lm, eng, ex)
    ids, am = enc["input_ids"], enc["attention_mask"]
    want, _ = lm.model.model.get_rope_index(
        input_ids=ids,
        mm_token_type_ids=enc["mm_token_type_ids"],
        image_grid_thw=enc["image_grid_thw"],
        attention_mask=am,
    )
    got = eng.passes.position_ids(ids, am)
    assert torch.equal(got, want) and not torch.equal(got[1], got[0])  # rows and columns of the image differ
    feats, _ = eng.passes.image_features(eng._pixel_values([ex.pixels]))
    inputs = eng.passes.embed([list(ids[0])], feats, left_pad=True)
    with torch.no_grad():
        mrope = lm.model(**inputs).logits[0, -1]
        plain = lm.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"]).logits[0, -1]
    lm.model.model.rope_deltas = None
    assert (mrope - plain).abs().max() > 1e-3


def test_greedy_answer_equals_the_models_own_generate(qwen):
    lm, eng = qwen
    ex_in = _examples(3)[2]
    g = eng.explain([ex_in])[0]
    assert qwen_generate_ids(lm, eng, _processor_inputs(lm, eng, eng._prepare(ex_in))) == _ids(eng, g)


def test_batched_equals_one_by_one_and_perturbed_passes_align(qwen):
    lm, eng = qwen
    exs = _examples(4)  # different question lengths: left padding in generate, right when teacher-forced
    batched = assert_engine_batched_equals_one_by_one(eng, exs)
    for g in batched:
        assert g.dS.shape == (len(g.perturbations), len(g.answer_tokens), 16) and g.dW.shape[1:] == g.W.shape


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_rollout_and_relevancy_equal_the_independent_reference(method, qwen):
    lm, eng = qwen
    batch = attribution_batch(eng, _examples(2, seed=5), [[5, 7, 9, 1], [9, 1]])
    assert_equals_reference(method, lm, eng, batch)


def _methods_batched_equal_one_by_one(method, pair):
    lm, eng = pair
    batch = attribution_batch(eng, _examples(3), [[5, 7, 1], [9, 1], [11, 4, 6, 8, 1]])
    assert_batched_equals_one_by_one(method, lm, batch)


@pytest.mark.parametrize("method", ["attention", "rollout", "relevancy", "gradcam"])
def test_methods_batched_equal_one_by_one_and_are_normalised(method, qwen):
    _methods_batched_equal_one_by_one(method, qwen)


def test_occlusion_batched_equals_one_by_one_and_is_normalised(qwen64):
    _methods_batched_equal_one_by_one("occlusion", qwen64)


def test_occlusion_ranks_a_planted_region_first(qwen64):
    """A grey image with one coloured block: greying any other block leaves the image as it was, so only the
    planted block can move the answer's probability. The answer explained is the token whose log p the planted
    block raises most over the all-grey image (an independent forward on the processor's inputs)."""
    lm, eng = qwen64
    img, grey, region = planted_images(eng, SIDE)
    ex = VQAInput("planted", Image.fromarray(img), "what color is the shape?")
    prompt = eng.passes.prompt_ids(eng._prepare(ex))
    ref = reference_copy(lm.model, torch.float64)
    text = eng.prompt.format(question=ex.question)
    enc = lm.processor(images=[Image.fromarray(img), Image.fromarray(grey)], text=[text, text], return_tensors="pt")
    assert enc["input_ids"][0].tolist() == prompt
    with torch.no_grad():
        logits = ref(**{**enc, "pixel_values": enc["pixel_values"].double()}).logits[:, len(prompt) - 1]
    gain = logits.log_softmax(-1)[0] - logits.log_softmax(-1)[1]
    token = int(torch.argmax(gain))
    assert gain[token] > 0
    assert_occlusion_finds(region, lm, attribution_batch(eng, [ex], [[token]], images=[img]))


def test_sanity_cascade_and_a_saved_checkpoint_loads_as_qwen(qwen, tmp_path):
    from stcg_model.attribution.sanity import cascade, randomised_copy
    from stcg_model.families.loading import load_model

    lm, eng = qwen
    order = cascade(lm.model)
    assert order[0] is lm.model.lm_head and order[-1] is lm.model.model.visual.merger
    copy = randomised_copy(lm, stages=2, seed=0)
    top = lm.model.model.language_model.layers[-1].self_attn.q_proj.weight
    assert not torch.equal(top, copy.model.model.language_model.layers[-1].self_attn.q_proj.weight)
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    back = load_model(str(tmp_path), device="cpu")
    assert type(back.model) is type(lm.model) and back.model.config.stcg_image_side == SIDE
    again = STCGEngine.from_config(back, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    again.min_new_tokens = 2
    exs = _examples(2, seed=9)
    for a, b in zip(eng.explain(exs), again.explain(exs)):
        assert a.answer == b.answer
        np.testing.assert_allclose(a.W, b.W, atol=1e-6)


def test_greedy_decoding_never_emits_the_image_placeholder():
    lm = tiny_qwen_vl(seed=SEED)
    image_id = lm.model.config.image_token_id
    with torch.no_grad():
        lm.model.lm_head.bias = torch.nn.Parameter(torch.zeros(lm.model.lm_head.out_features))
        lm.model.lm_head.bias[image_id] = 1e4
    eng = STCGEngine.from_config(lm, EngineConfig(deletion_steps=0, max_new_tokens=3, perturbations="center_mask"))
    for g in eng.explain(_examples(2)):  # with the bias, <|image_pad|> is every step's argmax
        assert image_id not in _ids(eng, g)


def test_eval_answers_equal_the_engines_on_images_of_any_shape(qwen):
    """``stcg eval`` runs the model's own ``generate`` on the processor's inputs; it gives Qwen the images at the
    engine's square side, so on images of different shapes in one batch both answer alike."""
    from stcg_model.engine.evaluation import greedy_answers

    lm, eng = qwen
    exs = [_examples(1, seed=i, size=(60 + 30 * i, 150))[0] for i in range(3)]
    exs = [dataclasses.replace(e, question=QUESTIONS[i]) for i, e in enumerate(exs)]
    plain = STCGEngine.from_config(lm, EngineConfig(deletion_steps=0, max_new_tokens=4, perturbations="center_mask"))
    want = [g.answer for g in plain.explain(exs)]
    assert greedy_answers(lm, [e.image for e in exs], [e.question for e in exs], 4) == want
