"""The InstructBLIP family (``InstructBlipForConditionalGeneration``) on tiny random models of the real
classes, with a T5 and with a Llama (Vicuna's class) language model, and word-level tokenizers for the
language model and the Q-Former. Checked against computations written here from docs/spec.md section 8:
the Q-Former reads the instruction (the prompt with the question) as ``InstructBlipProcessor`` gives it,
so ``C`` is the head- and layer-mean cross-attention of the queries with the instruction in the Q-Former;
``E`` and ``D`` are the language model's attention as for BLIP-2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.blip2.loading import use_capture_attention
from stcg_model.families.registry import family_for
from stcg_model.testing.tiny import tiny_instructblip
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
SEEDS = {"t5": 1, "llama": 3}


def _examples(n: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[VQAInput]:
    rng = np.random.default_rng(seed)
    h, w = size
    return [
        VQAInput(f"ib{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), QUESTIONS[i % 3])
        for i in range(n)
    ]


def sharpened(lm, scale: float = 8.0):
    """Random weights at initialisation scale attend almost uniformly (C within 1e-3 of 1/P): the Q-Former's
    query and key projections scaled up so its attention, and so what the instruction changes, is visible."""
    with torch.no_grad():
        for layer in lm.model.qformer.encoder.layer:
            for att in (layer.attention.attention, getattr(layer, "crossattention", None)):
                att = getattr(att, "attention", att)
                if att is not None:
                    att.query.weight.mul_(scale)
                    att.key.weight.mul_(scale)
    return lm


@pytest.fixture(scope="module", params=["t5", "llama"])
def ib(request):
    lm = sharpened(tiny_instructblip(request.param, seed=SEEDS[request.param]))
    eng = STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    eng.min_new_tokens = 2  # random weights: force multi-step answers so steps are tested
    return lm, eng


@pytest.fixture(scope="module", params=["t5", "llama"])
def ib64(request):
    """The same models in float64: occlusion reads drops in log p that a random model keeps small (~1e-2), and
    float32 arithmetic on CPU varies with a row's place in the batch by ~1e-5 of them."""
    lm = sharpened(tiny_instructblip(request.param, seed=SEEDS[request.param], dtype=torch.float64))
    return lm, STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))


def _ids(eng, graph) -> list[int]:
    return [int(i) for i in eng.tokenizer.convert_tokens_to_ids(graph.answer_tokens)]


def _processor_inputs(lm, eng, ex):
    return lm.processor(
        images=[Image.fromarray(ex.pixels)], text=eng.prompt.format(question=ex.ex.question), return_tensors="pt"
    )


def test_the_family_is_detected_and_rows_carry_the_processors_ids(ib):
    lm, eng = ib
    assert family_for(lm).__name__ == "stcg_model.families.instructblip.family"
    assert eng.prompt == "Question: {question} Short answer:" and eng.Q == 4
    ex = eng._prepare(_examples(1)[0])
    ids = eng.passes.prompt_ids(ex)
    enc = _processor_inputs(lm, eng, ex)
    assert enc["input_ids"][0].tolist() == list(ids)  # [image x Q | prompt], as the processor makes it
    assert enc["qformer_input_ids"][0].tolist() == ids.qformer_ids  # the instruction the Q-Former reads
    words = eng.tokenizer.convert_ids_to_tokens([ids[p] for p in eng.passes.question_positions(ex)])
    assert words == ["what", "color", "is", "the", "shape", "?"]


def _reference(model, enc, answer, kind):
    """Head-mean attention of one eager forward with ``output_attentions`` (no hooks): the Q-Former's
    cross-attention per layer (Q, 1+P), the language model's maps, and the answer's step log p."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            if kind == "t5":
                dec = torch.tensor([[model.config.text_config.decoder_start_token_id, *answer[:-1]]])
                out = model(**enc, decoder_input_ids=dec, output_attentions=True)
                lm_out = out.language_model_outputs
                lm_maps = (lm_out.encoder_attentions, lm_out.cross_attentions)
                logits = out.logits[0]
            else:
                ids = torch.cat([enc["input_ids"], torch.tensor([answer[:-1]])], 1)
                out = model(**{**enc, "input_ids": ids, "attention_mask": torch.ones_like(ids)}, output_attentions=True)
                lm_maps = (out.language_model_outputs.attentions, None)
                L = enc["input_ids"].shape[1]
                logits = out.logits[0, L - 1 : L - 1 + len(answer)]
            q_in = {k: v for k, v in enc.items() if k.startswith("qformer_")}
            feats = model.get_image_features(enc["pixel_values"], **q_in, output_attentions=True, return_dict=True)
    finally:
        use_capture_attention(model)
    cross = [a.mean(1)[0].double().numpy() for a in feats.qformer_outputs.cross_attentions]
    mean = lambda maps: torch.stack(maps).mean(2).mean(0)[0].double().numpy()  # noqa: E731
    lp = logits.double().log_softmax(-1)[torch.arange(len(answer)), torch.tensor(answer)].numpy()
    return cross, mean(lm_maps[0]), None if lm_maps[1] is None else mean(lm_maps[1]), lp


def test_engine_arrays_equal_output_attentions_and_C_reads_the_question(ib):
    lm, eng = ib
    kind = "t5" if lm.is_encoder_decoder else "llama"
    ex_in = _examples(2)[1]
    g = eng.explain([ex_in])[0]
    ex = eng._prepare(ex_in)
    answer = _ids(eng, g)
    enc = _processor_inputs(lm, eng, ex)
    cross, first, second, lp = _reference(lm.model, enc, answer, kind)
    C = np.mean(cross, 0)[:, 1:]
    assert np.abs(C / C.sum(1, keepdims=True) - 1 / C.shape[1]).max() > 0.02  # not uniform: the check means something
    np.testing.assert_allclose(g.C, C / C.sum(1, keepdims=True), atol=1e-6)
    L = enc["input_ids"].shape[1]
    if kind == "t5":
        np.testing.assert_allclose(g.E, first, atol=1e-6)
        np.testing.assert_allclose(g.D, second[: len(answer)], atol=1e-6)
    else:
        np.testing.assert_allclose(g.E, first[:L, :L], atol=1e-6)
        np.testing.assert_allclose(g.D, first[L - 1 : L - 1 + len(answer), :L], atol=1e-6)
    np.testing.assert_allclose(g.step_logprob, lp, atol=1e-5)
    # section 2 on the Q-Former's queries: W = renormalised (E[token, slots] @ C)
    pos = eng.passes.question_positions(ex)
    X = g.E[np.ix_(pos, np.arange(eng.Q))].astype(np.float64) @ g.C.astype(np.float64)
    np.testing.assert_allclose(g.W, X / X.sum(1, keepdims=True), atol=1e-5)
    # the Q-Former reads the question: another question on the same image moves C (BLIP-2's would not move)
    other = eng.explain([dataclasses.replace(ex_in, question="is there a red circle?")])[0]
    assert np.abs(other.C - g.C).max() > 2e-5  # float32 noise is ~1e-7


def test_greedy_answer_equals_the_models_own_generate(ib):
    lm, eng = ib
    ex_in = _examples(3)[2]
    g = eng.explain([ex_in])[0]
    enc = _processor_inputs(lm, eng, eng._prepare(ex_in))
    banned = eng.passes.banned_tokens()  # the decoder-only passes never emit the image placeholder
    gen = lm.model.generate(
        **enc,
        max_new_tokens=eng.max_new_tokens,
        min_new_tokens=2,
        do_sample=False,
        pad_token_id=eng.pad_id,
        **({"suppress_tokens": banned} if banned else {}),
    )
    start = 0 if lm.is_encoder_decoder else enc["input_ids"].shape[1]
    want = eng.passes.trim_answer(gen[0, start:].tolist()[eng.passes.generated_prefix :])
    assert want == _ids(eng, g)


def test_batched_equals_one_by_one_and_perturbed_passes_align(ib):
    lm, eng = ib
    exs = _examples(4)  # different question lengths: the Q-Former's instructions are padded too
    batched = assert_engine_batched_equals_one_by_one(eng, exs)
    for g in batched:
        assert g.dS.shape == (len(g.perturbations), len(g.answer_tokens), 16) and g.dW.shape[1:] == g.W.shape


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_rollout_and_relevancy_equal_the_independent_reference(method, ib):
    lm, eng = ib
    batch = attribution_batch(eng, _examples(2, seed=5), [[5, 7, 9, 1], [9, 1]])
    assert_equals_reference(method, lm, eng, batch)


def _methods_batched_equal_one_by_one(method, ib):
    lm, eng = ib
    batch = attribution_batch(eng, _examples(3), [[5, 7, 1], [9, 1], [11, 4, 6, 8, 1]])
    assert_batched_equals_one_by_one(method, lm, batch)


@pytest.mark.parametrize("method", ["attention", "rollout", "relevancy", "gradcam"])
def test_methods_batched_equal_one_by_one_and_are_normalised(method, ib):
    _methods_batched_equal_one_by_one(method, ib)


def test_occlusion_batched_equals_one_by_one_and_is_normalised(ib64):
    _methods_batched_equal_one_by_one("occlusion", ib64)


def test_occlusion_ranks_a_planted_region_first(ib64):
    """A grey image with one coloured patch: only the planted block can move the answer's probability.
    The answer explained is the first answer token whose log p the planted patch raises most over the
    all-grey image (computed here by an independent forward with the processor's inputs)."""
    lm, eng = ib64
    img, grey, region = planted_images(eng, 32)
    ex = VQAInput("planted", Image.fromarray(img), "what color is the shape?")
    prompt = eng.passes.prompt_ids(eng._prepare(ex))
    ref = reference_copy(lm.model, torch.float64)
    with torch.no_grad():
        kw = dict(
            pixel_values=eng._pixel_values([img, grey]),
            input_ids=torch.tensor([list(prompt)] * 2),
            qformer_input_ids=torch.tensor([prompt.qformer_ids] * 2),
        )
        if lm.is_encoder_decoder:
            start = lm.model.config.text_config.decoder_start_token_id
            logits = ref(**kw, decoder_input_ids=torch.tensor([[start]] * 2)).logits[:, 0]
        else:
            logits = ref(**kw).logits[:, len(prompt) - 1]
    gain = logits.log_softmax(-1)[0] - logits.log_softmax(-1)[1]
    token = int(torch.argmax(gain))
    assert gain[token] > 0
    assert_occlusion_finds(region, lm, attribution_batch(eng, [ex], [[token]], images=[img]))


def test_rows_without_the_instruction_are_refused_in_one_line(ib):
    lm, eng = ib
    ex = eng._prepare(_examples(1)[0])
    with pytest.raises(ValueError, match="carry no Q-Former ids"):
        eng.passes.logprobs([list(eng.passes.prompt_ids(ex))], [[5, 1]], eng._pixel_values([ex.pixels]))


def test_sanity_cascade_and_a_saved_checkpoint_loads_as_instructblip(ib, tmp_path):
    from stcg_model.attribution.sanity import cascade
    from stcg_model.families.loading import load_model

    lm, eng = ib
    order = cascade(lm.model)
    assert order[0] is lm.model.language_model.lm_head and order[-1] is lm.model.qformer.encoder.layer[0]
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    back = load_model(str(tmp_path), device="cpu")
    assert type(back.model).__name__ == "InstructBlipForConditionalGeneration"
    ex = eng._prepare(_examples(1)[0])
    enc = back.processor(images=[Image.fromarray(ex.pixels)], text=ex.prompt_text, return_tensors="pt")
    assert enc["qformer_input_ids"][0].tolist() == eng.passes.prompt_ids(ex).qformer_ids
    again = STCGEngine.from_config(back, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    again.min_new_tokens = 2
    exs = _examples(2, seed=9)
    for a, b in zip(eng.explain(exs), again.explain(exs)):
        assert a.answer == b.answer
        np.testing.assert_allclose(a.C, b.C, atol=1e-6)


def test_prompt_ids_keep_the_instruction_through_pickling(ib):
    """Rows travel between processes (Ray's host engine) pickled: the Q-Former's ids go with them."""
    import pickle

    from stcg_model.families.instructblip.passes import PromptIds

    lm, eng = ib
    ids = eng.passes.prompt_ids(eng._prepare(_examples(1)[0]))
    back = pickle.loads(pickle.dumps(ids))
    assert isinstance(back, PromptIds) and back == ids and back.qformer_ids == ids.qformer_ids
    assert eng.passes.image_kwargs([back])["qformer_input_ids"][0].tolist() == ids.qformer_ids
