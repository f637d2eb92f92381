"""Qwen-VL at its own resolution: each image keeps its aspect ratio and gets its own ``rows x cols`` grid of
merged 2 x 2 blocks from Qwen's processor (``smart_resize``), its prompt ``rows * cols`` image slots, and rows
of different grids share a batch (patches padded per row, features scattered in slot order, M-RoPE from
each row's ``image_grid_thw``). Checked against the processor's own resize, patches and ids, the model's own
forward, ``get_rope_index`` and ``generate``, the independent reference, and one-by-one runs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from stcg.images import quantise
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.qwen_vl.passes import GridPromptIds
from stcg_model.families.qwen_vl.pixels import QwenPixels
from stcg_model.testing.tiny import tiny_qwen_vl
from tests.attribution_reference import reference_copy
from tests.family_checks import (
    assert_batched_equals_one_by_one,
    assert_engine_batched_equals_one_by_one,
    assert_equals_reference,
    assert_occlusion_finds,
    attribution_batch,
    qwen_generate_ids,
)
from tests.test_family_qwen_vl import _reference_attention

QUESTIONS = ["What color is the shape?", "is the triangle blue?", "what shape is in the image?"]
SEED = 3
SHAPES = [(90, 120), (112, 112), (60, 150), (200, 80)]  # (h, w): grids 3 x 4, 4 x 4, 2 x 5, 6 x 2
GRIDS = [(3, 4), (4, 4), (2, 5), (6, 2)]


def _examples(shapes=SHAPES, seed: int = 0) -> list[VQAInput]:
    rng = np.random.default_rng(seed)
    return [
        VQAInput(f"qn{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), QUESTIONS[i % 3])
        for i, (h, w) in enumerate(shapes)
    ]


@pytest.fixture(scope="module", params=["2.5", "2"])
def native(request):
    lm = tiny_qwen_vl(request.param, seed=SEED, native=True)
    eng = STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    eng.min_new_tokens = 2  # random weights: force multi-step answers so steps are tested
    return lm, eng


@pytest.fixture(scope="module")
def native64():
    lm = tiny_qwen_vl("2.5", seed=SEED, native=True, dtype=torch.float64)
    return lm, STCGEngine.from_config(lm, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))


def _ids(eng, graph) -> list[int]:
    return [int(i) for i in eng.tokenizer.convert_tokens_to_ids(graph.answer_tokens)]


def _processor_inputs(lm, eng, exs, **kw):
    return lm.processor(
        images=[Image.fromarray(ex.pixels) for ex in exs],
        text=[eng.prompt.format(question=ex.ex.question) for ex in exs],
        return_tensors="pt",
        **kw,
    )


@pytest.mark.parametrize("bounds", [None, (56 * 56, 112 * 112)])
def test_the_grid_is_the_processors_own_resize_and_rows_its_patches(bounds):
    """``grid_shape`` of any image size is half the processor's ``image_grid_thw`` (the image processor's default
    bounds, 3,136 .. 1,003,520 pixels, and a tiny model's), and a row's real patches are the processor's."""
    ip = (
        Qwen2VLImageProcessorPil()
        if bounds is None
        else Qwen2VLImageProcessorPil(min_pixels=bounds[0], max_pixels=bounds[1])
    )
    pixels = QwenPixels(ip, None, 28)
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(480, 640), (33, 700), (250, 251), (20, 20)]]
    pv = pixels(arrays)
    assert pv.shape[0] == 4
    for r, a in enumerate(arrays):
        enc = ip(images=[Image.fromarray(a)], return_tensors="pt")
        rows, cols = pixels.grid_shape(a.shape[1], a.shape[0])
        assert enc["image_grid_thw"].tolist() == [[1, 2 * rows, 2 * cols]]
        n = enc["pixel_values"].shape[0]
        np.testing.assert_allclose(pv[r, :n].numpy(), enc["pixel_values"].numpy(), atol=1e-6)
        assert not pv[r, n:].any()  # the padding of a shorter row
    assert pixels.grid_shape(640, 480) != pixels.grid_shape(480, 640) or bounds is not None


def test_each_image_has_its_own_grid_slots_and_boxes(native):
    lm, eng = native
    assert eng.grid_side is None and eng.Q is None and eng.params["grid"] is None
    exs = _examples()
    prepared = [eng._prepare(e) for e in exs]
    assert [p.grid.shape for p in prepared] == GRIDS
    enc = _processor_inputs(lm, eng, prepared, padding=True, padding_side="left")
    assert enc["image_grid_thw"][:, 1:].tolist() == [[2 * r, 2 * c] for r, c in GRIDS]
    for p, row, am in zip(prepared, enc["input_ids"], enc["attention_mask"]):
        ids = eng.passes.prompt_ids(p)
        assert isinstance(ids, GridPromptIds) and ids.grid_thw == (1, 2 * p.grid.shape[0], 2 * p.grid.shape[1])
        assert row[am.bool()].tolist() == list(ids)  # the processor expands <|image_pad|> to the same slots
        words = eng.tokenizer.convert_ids_to_tokens([ids[q] for q in eng.passes.question_positions(p)])
        assert words[-1] == "?" and len(words) == len(p.q_index)
    graphs = eng.explain(exs, batch_size=4)
    for g, (h, w), (rows, cols) in zip(graphs, SHAPES, GRIDS):
        assert g.grid_shape == (rows, cols) and g.num_regions == rows * cols
        assert g.W.shape == (len(g.tokens), rows * cols) and g.C.shape == (rows * cols, rows * cols)
        assert g.dS.shape == (len(g.perturbations), len(g.answer_tokens), rows * cols)
        boxes = np.asarray(g.boxes)
        assert boxes[-1].tolist()[2:] == [w, h] and boxes[cols - 1][2] == w and boxes[cols][1] > 0
        assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum() == w * h  # they tile the image
        np.testing.assert_allclose(g.W.sum(1), 1.0, atol=1e-5)


def test_engine_arrays_equal_the_models_own_forward_on_a_non_square_image(native):
    lm, eng = native
    exs = _examples()
    graphs = eng.explain(exs, batch_size=4)  # explained beside images of other grids
    i, g = next((i, g) for i, g in enumerate(graphs) if len(g.answer_tokens) >= 2 and g.grid_shape[0] != g.cols)
    ex = eng._prepare(exs[i])
    answer = _ids(eng, g)
    prompt = eng.passes.prompt_ids(ex)
    L = len(prompt)
    att, logp = _reference_attention(lm.model, _processor_inputs(lm, eng, [ex]), answer)
    np.testing.assert_allclose(g.E, att[:L, :L], atol=1e-6)
    np.testing.assert_allclose(g.D, att[L - 1 : L - 1 + len(answer), :L], atol=1e-6)
    steps = torch.arange(L - 1, L - 1 + len(answer))
    np.testing.assert_allclose(g.step_logprob, logp[steps, torch.tensor(answer)].numpy(), atol=1e-5)
    slots = np.flatnonzero(np.asarray(prompt) == lm.model.config.image_token_id)
    rows = att[np.ix_(eng.passes.question_positions(ex), slots)]
    np.testing.assert_allclose(g.W, rows / rows.sum(1, keepdims=True), atol=1e-6)


def test_positions_equal_get_rope_index_on_a_left_padded_batch_of_mixed_grids(native):
    lm, eng = native
    prepared = [eng._prepare(e) for e in _examples()]
    enc = _processor_inputs(lm, eng, prepared, padding=True, padding_side="left")
    want, _ = lm.model.model.get_rope_index(
        input_ids=enc["input_ids"],
        mm_token_type_ids=enc["mm_token_type_ids"],
        image_grid_thw=enc["image_grid_thw"],
        attention_mask=enc["attention_mask"],
    )
    prompts = [eng.passes.prompt_ids(p) for p in prepared]
    assert torch.equal(eng.passes.position_ids(enc["input_ids"], enc["attention_mask"], prompts), want)
    with pytest.raises(ValueError, match="carry their grid"):  # plain lists say nothing of the grid
        eng.passes.position_ids(enc["input_ids"], enc["attention_mask"], [list(p) for p in prompts])


def test_greedy_answers_equal_the_models_own_generate_and_stcg_eval(native):
    from stcg_model.engine.evaluation import greedy_answers

    lm, eng = native
    exs = _examples()
    graphs = eng.explain(exs, batch_size=4)
    for ex_in, g in zip(exs, graphs):
        assert qwen_generate_ids(lm, eng, _processor_inputs(lm, eng, [eng._prepare(ex_in)])) == _ids(eng, g)
    plain = STCGEngine.from_config(lm, EngineConfig(deletion_steps=0, max_new_tokens=4, perturbations="center_mask"))
    want = [g.answer for g in plain.explain(exs)]
    assert greedy_answers(lm, [e.image for e in exs], [e.question for e in exs], 4) == want


def test_batched_equals_one_by_one_on_mixed_grids(native):
    lm, eng = native
    exs = _examples()
    assert_engine_batched_equals_one_by_one(eng, exs)


def _batch(eng, seed: int = 0):
    return attribution_batch(eng, _examples(SHAPES[:3], seed), [[5, 7, 1], [9, 1], [11, 4, 6, 1]])


@pytest.mark.parametrize("method", ["attention", "rollout", "relevancy", "gradcam"])
def test_methods_batched_equal_one_by_one_on_mixed_grids(method, native):
    lm, eng = native
    assert_batched_equals_one_by_one(method, lm, _batch(eng))


def test_occlusion_batched_equals_one_by_one_on_mixed_grids(native64):
    lm, eng = native64
    assert_batched_equals_one_by_one("occlusion", lm, _batch(eng))


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_rollout_and_relevancy_equal_the_independent_reference_on_mixed_grids(method, native):
    lm, eng = native
    assert_equals_reference(method, lm, eng, _batch(eng, seed=5))


def test_occlusion_ranks_a_planted_region_of_a_wide_grid_first(native64):
    """An 84 x 140 px image (a 3 x 5 grid of 28 px blocks) of the fill grey with one coloured block at row 1,
    column 3 (region 8): only that block can move the answer's probability when greyed."""
    lm, eng = native64
    fill = quantise(np.asarray(eng.fill, dtype=np.float32))
    grey = np.broadcast_to(fill, (84, 140, 3)).copy()
    img = grey.copy()
    img[28:56, 84:112] = (0, 200, 0)
    ex = VQAInput("planted", Image.fromarray(img), "what color is the shape?")
    p = eng._prepare(ex)
    assert p.grid.shape == (3, 5)
    prompt = eng.passes.prompt_ids(p)
    ref = reference_copy(lm.model, torch.float64)
    text = eng.prompt.format(question=ex.question)
    enc = lm.processor(images=[Image.fromarray(img), Image.fromarray(grey)], text=[text, text], return_tensors="pt")
    assert enc["input_ids"][0].tolist() == list(prompt)
    with torch.no_grad():
        logits = ref(**{**enc, "pixel_values": enc["pixel_values"].double()}).logits[:, len(prompt) - 1]
    gain = logits.log_softmax(-1)[0] - logits.log_softmax(-1)[1]
    token = int(torch.argmax(gain))
    assert gain[token] > 0
    assert_occlusion_finds(8, lm, attribution_batch(eng, [ex], [[token]], images=[img]))


def test_grid_prompt_ids_pickle_and_a_saved_native_checkpoint_keeps_its_grids(native, tmp_path):
    from stcg_model.families.loading import load_model

    lm, eng = native
    ids = eng.passes.prompt_ids(eng._prepare(_examples()[0]))
    back_ids = pickle.loads(pickle.dumps(ids))
    assert back_ids == ids and back_ids.grid_thw == ids.grid_thw == (1, 6, 8)
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    back = load_model(str(tmp_path), device="cpu")
    assert getattr(back.model.config, "stcg_image_side", None) is None  # as a released checkpoint's config
    again = STCGEngine.from_config(back, EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    again.min_new_tokens = 2
    for a, b in zip(eng.explain(_examples()), again.explain(_examples())):
        assert a.answer == b.answer and a.grid_shape == b.grid_shape
        np.testing.assert_allclose(a.W, b.W, atol=1e-6)


def test_stcg_explain_prints_rows_and_columns_of_a_wide_grid(native, tmp_path):
    """``stcg explain`` on a saved native checkpoint and a 90 x 160 px image (a 3 x 5 grid): every region it
    prints is inside the grid, with the method table, the pictures and the graph written."""
    import re
    import subprocess
    import sys

    lm, _ = native
    ckpt, img = tmp_path / "ckpt", tmp_path / "wide.png"
    lm.model.save_pretrained(ckpt)
    lm.processor.save_pretrained(ckpt)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)).save(img)
    args = ["explain", "--image", str(img), "--question", "what color is the shape?", "--model", str(ckpt)]
    args += ["--attributions", "rollout,occlusion", "--deletion-steps", "2", "--out", str(tmp_path / "out")]
    res = subprocess.run([sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    cells = [tuple(map(int, m)) for m in re.findall(r"\((\d+),\s?(\d+)\)", res.stdout)]
    assert len(cells) > 10 and all(r < 3 and c < 5 for r, c in cells) and any(c >= 3 for _, c in cells)
    from stcg_model.graph import STCGraph

    assert STCGraph.load(tmp_path / "out" / "graph.safetensors").grid_shape == (3, 5)
    assert (tmp_path / "out" / "wide__methods.png").exists()


def test_a_weightless_host_engine_prepares_the_same_batch(native, tmp_path):
    """Ray's read tasks prepare batches on a weightless engine (the model on the meta device, the processor
    loaded): its grids, prompt ids and padded patches equal the loaded engine's, and pickle with their grids."""
    from ingest.drivers.ray_stages import host_engine

    lm, eng = native
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    host = host_engine(str(tmp_path), EngineConfig(seed=7, deletion_steps=3, max_new_tokens=4))
    assert {p.device.type for p in host.model.parameters()} == {"meta"}
    exs = _examples()
    a, b = eng.prepare_batch(exs), pickle.loads(pickle.dumps(host.prepare_batch(exs)))
    assert [p.grid for p in a.prepared] == [p.grid for p in b.prepared]
    assert [eng.passes.prompt_ids(p) for p in a.prepared] == [host.passes.prompt_ids(p) for p in b.prepared]
    assert [host.passes.prompt_ids(p).grid_thw for p in b.prepared] == [(1, 2 * r, 2 * c) for r, c in GRIDS]
    assert torch.equal(a.pixel_values, b.pixel_values) and a.pixel_values.shape[0] == len(a.rows)


def test_an_image_too_elongated_for_qwen_is_refused_in_one_line(native):
    from stcg.errors import StcgError

    _, eng = native
    thin = VQAInput("thin", Image.fromarray(np.zeros((2, 500, 3), np.uint8)), QUESTIONS[0])
    with pytest.raises(StcgError, match="too elongated for Qwen-VL"):
        eng._prepare(thin)
