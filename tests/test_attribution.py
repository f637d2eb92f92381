"""Independent checks of the attribution methods (docs/spec.md section 6) on tiny random BLIP-2 models
(T5 and OPT) and, where a model must really look at the image, the shipped demo model.

The rollout/relevancy/gradcam references live in ``tests/attribution_reference.py``: written from
the spec alone, with their own attention function (maps recorded with heads kept, gradients by
``torch.autograd``), one example at a time, the model and the relevancy rules in float64.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from stcg.errors import StcgError
from stcg.images import quantise
from stcg_model.attribution.base import (
    AttributionBatch,
    MethodMaps,
    attribution_names,
    get_attribution,
    parse_attributions,
)
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.families.blip2.loading import prepare
from stcg_model.families.inputs import decode_answer, prompt_ids, question_positions
from stcg_model.testing.tiny import tiny_blip2
from tests.attribution_reference import (
    exact_rms_norms,
    finite_difference,
    forward,
    reference_copy,
    reference_maps,
    region_from,
    rows_normalised,
)

SEED = 11  # tests/conftest.py's TINY_SEED: the tiny checkpoint the other tests load
QUESTIONS = ["What color is the shape?", "is the triangle blue?", "what shape is in the image?"]
# answers of 3, 2 and 5 steps (1 = </s> on the word-level tokenizer); batch rows get padded
ANSWERS = [[5, 7, 1], [9, 1], [11, 4, 6, 8, 1]]
BUILTINS = ["attention", "rollout", "relevancy", "gradcam", "occlusion"]


# ----------------------------------------------------------------------------- helpers
def _images(n: int, seed: int = 0, size: int = 32) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _examples(n: int = 3, seed: int = 0, size: int = 32) -> list[VQAInput]:
    return [VQAInput(f"ex{i}", im, QUESTIONS[i % len(QUESTIONS)]) for i, im in enumerate(_images(n, seed, size))]


def make_batch(eng: STCGEngine, examples, answers, images: list[np.ndarray] | None = None) -> AttributionBatch:
    """The ``AttributionBatch`` the engine hands the methods (``[image token x Q | prompt tokens]``,
    question-token positions), with ``answers`` as given. The only place that builds one.

    ``images`` (uint8 arrays) replace the examples' own pixels (same size) when given."""
    prep = eng.prepare_batch(examples).prepared
    pixels = [p.pixels for p in prep] if images is None else list(images)
    Q = eng.Q
    return AttributionBatch(
        pixel_values=eng._pixel_values(pixels),
        images=pixels,
        grids=[p.grid for p in prep],
        prompt_ids=[prompt_ids(p, Q, eng.image_token_id) for p in prep],
        answers=[list(a) for a in answers],
        token_positions=[question_positions(p, Q) for p in prep],
        is_eos=[np.array([t == eng.eos_id for t in a]) for a in answers],
        fill=eng.fill,
        to_pixels=eng._pixel_values,
    )


def _row(batch: AttributionBatch, r: int) -> AttributionBatch:
    """Row ``r`` of ``batch`` alone."""
    return dataclasses.replace(
        batch,
        pixel_values=batch.pixel_values[r : r + 1],
        **{
            f: [getattr(batch, f)[r]] for f in ("images", "grids", "prompt_ids", "answers", "token_positions", "is_eos")
        },
    )


def _ref(
    ref_model, method: str, batch: AttributionBatch, r: int, Q: int, target: str = "logit"
) -> dict[str, np.ndarray]:
    return reference_maps(
        ref_model,
        method,
        batch.pixel_values[r : r + 1],
        batch.prompt_ids[r],
        batch.answers[r],
        batch.token_positions[r],
        batch.is_eos[r],
        Q,
        target,
    )


def _maxdiff(got: MethodMaps, want: dict[str, np.ndarray]) -> dict[str, float]:
    arrays = got.arrays()
    return {k: float(np.abs(arrays[k].astype(np.float64) - want[k]).max()) for k in want}


def _greedy_ids(eng: STCGEngine, graph) -> list[int]:
    """The answer ids of an STCGraph (word-level tokenizer: tokens are the vocabulary entries)."""
    ids = eng.tokenizer.convert_tokens_to_ids(graph.answer_tokens)
    assert decode_answer(eng.tokenizer, ids, eng.eos_id) == graph.answer
    return [int(i) for i in ids]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def t5():
    lm = tiny_blip2("t5", seed=SEED)
    eng = STCGEngine(lm, "center_mask", deletion_steps=0)
    return lm, eng


@pytest.fixture(scope="module")
def t5_batch(t5):
    _, eng = t5
    return make_batch(eng, _examples(3), ANSWERS)


@pytest.fixture(scope="module")
def t5_ref(t5):
    """The reference runs the model in float64 (the truth the float32 implementation approximates)."""
    return reference_copy(t5[0].model, torch.float64)


@pytest.fixture(scope="module")
def opt():
    lm = tiny_blip2("opt", seed=SEED)
    eng = STCGEngine(lm, "center_mask", deletion_steps=0)
    return lm, eng


@pytest.fixture(scope="module")
def t5_maps(t5, t5_batch):
    """Every registered method that needs no ground-truth mask on the 3-row T5 batch (computed once)."""
    lm, _ = t5
    names = [n for n in attribution_names() if not get_attribution(n).needs_masks]
    return {name: get_attribution(name).compute(lm, t5_batch) for name in names}


# ----------------------------------------------------------------------------- registry
def test_registry_lists_the_builtins_in_order_and_rejects_unknown_names():
    names = attribution_names()
    assert names[: len(BUILTINS)] == BUILTINS
    everyday = {n for n in names if get_attribution(n).in_all and not get_attribution(n).needs_masks}
    assert parse_attributions("all")[0] == "attention" and set(parse_attributions("all")) == everyday
    # the ground-truth references join `all` only when the examples carry masks; named without: one line
    assert set(parse_attributions("all", masks=True)) == everyday | {"oracle", "random"}
    with pytest.raises(StcgError, match="needs ground-truth masks"):
        parse_attributions("relevancy,oracle")
    # the log p targets are options, named explicitly
    assert "relevancy_logp" not in everyday and parse_attributions("gradcam_logp")[1] == "gradcam_logp"
    assert parse_attributions("relevancy, occlusion") == ["attention", "relevancy", "occlusion"]
    with pytest.raises(StcgError, match="unknown attribution method"):
        parse_attributions("relevancy,nope")
    with pytest.raises(StcgError, match="twice"):
        parse_attributions("rollout,rollout")
    assert get_attribution("relevancy").needs_gradients and not get_attribution("rollout").needs_gradients


# ----------------------------------------------------------------------------- 1. attention == engine
def test_attention_method_equals_the_engines_stcgraph(t5):
    lm, eng = t5
    examples = _examples(3, seed=4)
    graphs = eng.explain(examples, batch_size=3)
    answers = [_greedy_ids(eng, g) for g in graphs]
    maps = get_attribution("attention").compute(lm, make_batch(eng, examples, answers))
    for g, m in zip(graphs, maps):
        assert m.method == "attention"
        for name, want in (("C", g.C), ("W", g.W), ("S", g.S), ("region", g.attribution)):
            got = getattr(m, name)
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=name)


# ----------------------------------------------------------------------------- 2. rollout / relevancy == reference
@pytest.mark.parametrize("method", ["rollout", "relevancy", "gradcam", "relevancy_logp", "gradcam_logp"])
def test_t5_method_equals_the_independent_reference_one_example_at_a_time(method, t5_batch, t5_ref, t5_maps, t5):
    """Each batched row against the reference run on that example alone (the reference never pads).
    ``relevancy`` and ``gradcam`` differentiate the answer logits, their ``_logp`` variants log p."""
    Q = t5[1].Q
    base, _, variant = method.partition("_")
    target = "logp" if variant else "logit"
    for r in range(len(t5_batch)):
        if base == "gradcam":
            want = _gradcam_reference(t5_ref, t5_batch, r, Q, target)
        else:
            want = _ref(t5_ref, base, t5_batch, r, Q, target)
        diff = _maxdiff(t5_maps[method][r], want)
        assert max(diff.values()) < 1e-5, (method, r, diff)


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_t5_method_equals_the_reference_on_a_single_row_batch(method, t5_batch, t5_ref, t5):
    lm, eng = t5
    r = 1
    got = get_attribution(method).compute(lm, _row(t5_batch, r))[0]
    diff = _maxdiff(got, _ref(t5_ref, method, t5_batch, r, eng.Q))
    assert max(diff.values()) < 1e-5, diff


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_opt_method_equals_the_independent_reference(method, opt):
    lm, eng = opt
    batch = make_batch(eng, _examples(2, seed=5), [[5, 7, 9, 1], [9, 1]])
    ref = reference_copy(lm.model, torch.float64)
    maps = get_attribution(method).compute(lm, batch)
    for r in range(len(batch)):
        diff = _maxdiff(maps[r], _ref(ref, method, batch, r, eng.Q))
        assert max(diff.values()) < 1e-5, (r, diff)


def test_rollout_equals_the_reference_on_the_demo_model(demo, demo_batch):
    """The tiny random models attend almost uniformly, so some rules barely show on them (dropping the
    transpose of the cross rule moves their rollout by ~4e-6); the trained demo model's attention is
    sharp (the same slip moves it by ~1e-2). Rows one at a time (batching is checked in test 6)."""
    lm, eng = demo
    ref = reference_copy(lm.model)  # rollout has no gradients: float32 agrees with float64 to ~1e-8
    for r in (0, 2):  # answers of 2 and 4 steps
        got = get_attribution("rollout").compute(lm, _row(demo_batch, r))[0]
        diff = _maxdiff(got, _ref(ref, "rollout", demo_batch, r, eng.Q))
        assert max(diff.values()) < 1e-6, (r, diff)


def _gradcam_reference(ref_model, batch, r, Q, target: str = "logit"):
    """Grad-CAM (docs/spec.md section 6): C from the Q-Former cross-attention weighted by d score/dA, the score
    being the answer tokens' summed logits (``gradcam``) or log p(answer) (``gradcam_logp``), W and S
    through section 2 with the raw (head- and layer-mean) encoder/decoder attention."""
    with torch.enable_grad():
        fw = forward(ref_model, batch.pixel_values[r : r + 1], batch.prompt_ids[r], batch.answers[r])
        keys = [k for k in fw.maps if k[0] == "qc"]
        grads = torch.autograd.grad(fw.target(target).sum(), [fw.maps[k] for k in keys])
    cam = np.mean(
        [(g.double() * fw.maps[k].detach().double()).clamp(min=0)[0].mean(0).numpy() for k, g in zip(keys, grads)], 0
    )
    C = rows_normalised(cam[:, 1:])
    E = np.mean([fw.maps[k].detach().double()[0].mean(0).numpy() for k in fw.maps if k[0] == "es"], 0)
    D = np.mean([fw.maps[k].detach().double()[0].mean(0).numpy() for k in fw.maps if k[0] == "dc"], 0)
    pos = np.asarray(batch.token_positions[r])
    a = E[pos, :Q] / E[pos, :Q].sum(1, keepdims=True)
    b = D[:, :Q] / D[:, :Q].sum(1, keepdims=True)
    S = b @ C
    return {"C": C, "W": a @ C, "S": S, "region": region_from(S, batch.is_eos[r])}


# ----------------------------------------------------------------------------- 3. gradients vs finite differences
@pytest.fixture(scope="module")
def t5_float64(t5):
    lm, eng = t5
    lm64 = prepare(copy.deepcopy(lm.model), lm.processor, "tiny-t5-float64", device="cpu", dtype=torch.float64)
    exact_rms_norms(lm64.model)  # float64 throughout, like the reference
    batch = make_batch(eng, _examples(1, seed=9), [[5, 7, 1]])
    batch.pixel_values = batch.pixel_values.double()
    return lm64, batch, reference_copy(lm.model, torch.float64)


def _largest(g: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(g.abs().argmax()), tuple(g.shape)))


@pytest.mark.parametrize(
    "key,target",
    [
        (("qc", 0), "answer"),
        (("qc", 1), "step1"),
        (("qs", 1), "answer"),
        (("es", 1), "answer"),
        (("ds", 1), "step2"),
        (("dc", 0), "step0"),
        (("dc", 1), "answer"),
    ],
)
def test_gradient_of_log_p_wrt_an_attention_weight_matches_finite_differences(key, target, t5_float64):
    """d log p / d A (heads kept), A the softmax output: autograd (the reference's recorded maps, and
    the implementation's own traced maps) vs central differences of a perturbation added to A."""
    from stcg_model.families.blip2.passes import passes_for

    lm64, batch, ref64 = t5_float64
    pick = (lambda lp: lp.sum()) if target == "answer" else (lambda lp, t=int(target[-1]): lp[t])
    pv = batch.pixel_values[:1]
    with torch.enable_grad():
        fw = forward(ref64, pv, batch.prompt_ids[0], batch.answers[0])
        g_ref = torch.autograd.grad(pick(fw.logp), fw.maps[key])[0]
    assert g_ref.dtype == torch.float64 and float(g_ref.abs().max()) > 1e-6
    index = _largest(g_ref)
    second = (0, (index[1] + 1) % g_ref.shape[1], *index[2:])  # another head, same entry
    for idx in (index, second):
        fd = finite_difference(ref64, pv, batch.prompt_ids[0], batch.answers[0], key, idx, 1e-4, pick, like=g_ref)
        assert float(g_ref[idx]) == pytest.approx(fd, rel=1e-6, abs=1e-10), idx

    # the implementation's traced maps: the same gradient
    fam = passes_for(lm64)
    with torch.enable_grad():
        traced = fam.trace(batch.prompt_ids, batch.answers, pv.clone().requires_grad_(True))
        field = {"qc": "qformer_cross", "qs": "qformer_self", "es": "lm_self", "ds": "dec_self", "dc": "dec_cross"}
        A = getattr(traced, field[key[0]])[key[1]]
        logp = traced.logp[0, : len(batch.answers[0])]
        g_impl = torch.autograd.grad(pick(logp), A)[0]
    np.testing.assert_allclose(A.detach().numpy(), fw.maps[key].detach().numpy(), atol=1e-12)
    # (the implementation takes log p of float32 logits, so its gradient carries float32 rounding)
    np.testing.assert_allclose(g_impl.numpy(), g_ref.numpy(), atol=1e-6 * float(g_ref.abs().max()), rtol=1e-5)


# ----------------------------------------------------------------------------- 4. occlusion
# The tiny random models barely look at the image (their p(y) moves by ~1e-9 when a patch is greyed,
# below float32 resolution), so occlusion is checked on the shipped demo model, trained on easy-VQA.
@pytest.fixture(scope="module")
def demo():
    from stcg_model.families.loading import load_model

    lm = load_model(None, device="cpu")
    return lm, STCGEngine(lm, "center_mask", deletion_steps=0)


@pytest.fixture(scope="module")
def easy_vqa_examples():
    """Easy-VQA test questions on distinct images, with distinct question lengths."""
    from stcg.datasets import open_dataset

    seen, lengths, out = set(), set(), []
    for e in open_dataset("easy-vqa", split="test", limit=60):
        n = len(e.question.split())
        if e.image_path not in seen and n not in lengths:
            seen.add(e.image_path)
            lengths.add(n)
            out.append(VQAInput(e.example_id, e.load_image(), e.question))
    assert len(out) >= 4
    return out[:4]


@pytest.fixture(scope="module")
def demo_greedy(demo, easy_vqa_examples):
    """The demo model's greedy answer ids for ``easy_vqa_examples`` (one engine pass)."""
    lm, eng = demo
    return [_greedy_ids(eng, g) for g in eng.explain(easy_vqa_examples, batch_size=4)]


def test_occlusion_ranks_the_only_informative_region_first(demo):
    """Fill grey everywhere except one green patch: greying any other block changes nothing."""
    lm, eng = demo
    G = eng.grid_side
    fill = quantise(np.asarray(eng.fill, dtype=np.float32))
    region = 3 * G + 4
    side = 64 // G
    img = np.broadcast_to(fill, (64, 64, 3)).copy()
    img[3 * side : 4 * side, 4 * side : 5 * side] = (0, 200, 0)
    ex = VQAInput("one-patch", Image.fromarray(img), "what color is the shape?")
    g = eng.explain([ex])[0]
    answer = _greedy_ids(eng, g)
    assert g.answer == "green"
    ref = reference_copy(lm.model)
    batch = make_batch(eng, [ex], [answer])
    with torch.no_grad():
        grey = eng._pixel_values([np.broadcast_to(fill, img.shape).copy()])
        p_grey = forward(ref, grey, batch.prompt_ids[0], answer).logp.sum().exp().item()
    assert g.p_clean - p_grey > 0.5  # the answer needs that patch
    m = get_attribution("occlusion").compute(lm, batch)[0]
    assert m.C is None and m.W is None
    assert int(np.argmax(m.region)) == region
    assert m.region[region] == pytest.approx(1.0, abs=1e-6)
    assert np.abs(np.delete(m.region, region)).max() < 1e-6
    assert int(np.argmax(m.S[0])) == region  # the content step's log-p drop


@pytest.mark.parametrize("max_blocks,block", [(64, 1), (16, 2)])
def test_occlusion_equals_brute_force_greying(max_blocks, block, demo, easy_vqa_examples, demo_greedy):
    """a[p] = (p(y|I) - p(y|I with p's block greyed))+, normalised; S[t] from step t's log-p drop;
    blocks of b x b patches, b the smallest side giving at most ``max_blocks`` blocks (8 x 8 grid)."""
    lm, eng = demo
    G = eng.grid_side
    answer = demo_greedy[0]
    batch = make_batch(eng, easy_vqa_examples[:1], [answer])
    method = get_attribution("occlusion")
    method.max_blocks = max_blocks
    m = method.compute(lm, batch)[0]
    ref = reference_copy(lm.model)
    fill = quantise(np.asarray(eng.fill, dtype=np.float32))
    blocks = [
        [y * G + x for y in range(by, min(by + block, G)) for x in range(bx, min(bx + block, G))]
        for by in range(0, G, block)
        for bx in range(0, G, block)
    ]
    greyed = [batch.grids[0].fill_regions(batch.images[0].copy(), b, fill) for b in blocks]
    pv = eng._pixel_values([batch.images[0], *greyed])
    with torch.no_grad():  # (every row has the same prompt and answer: no padding)
        lps = forward(ref, pv, batch.prompt_ids[0], answer).logp.double().numpy()
    a = np.zeros(G * G)
    s = np.zeros((len(answer), G * G))
    for b, lp in zip(blocks, lps[1:]):
        a[b] = np.exp(lps[0].sum()) - np.exp(lp.sum())
        s[:, b] = (lps[0] - lp)[:, None]
    assert (a > 1e-3).sum() >= block * block  # some block matters
    np.testing.assert_allclose(m.region, rows_normalised(a), atol=1e-5)
    np.testing.assert_allclose(m.S, rows_normalised(s), atol=1e-5)


# ----------------------------------------------------------------------------- 5. model randomisation
def _randomised(lm, seed: int = 0):
    """The same model with its Q-Former, query tokens, projection and language model re-initialised."""
    model = copy.deepcopy(lm.model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part in (model.qformer, model.language_projection, model.language_model):
            for mod in part.modules():
                if isinstance(mod, torch.nn.Linear | torch.nn.Embedding):
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.02)
                    if getattr(mod, "bias", None) is not None:
                        mod.bias.zero_()
        model.query_tokens.copy_(torch.randn(model.query_tokens.shape, generator=gen) * 0.02)
    return dataclasses.replace(lm, model=model)


def test_relevancy_changes_when_the_model_is_randomised(demo, easy_vqa_examples, demo_greedy):
    """Adebayo et al. 2018 on the demo model: trained vs re-initialised region relevancy (same answers)."""
    lm, eng = demo
    batch = make_batch(eng, easy_vqa_examples, demo_greedy)
    trained = get_attribution("relevancy").compute(lm, batch)
    rand = get_attribution("relevancy").compute(_randomised(lm), batch)
    rho = np.array([spearmanr(a.region, b.region).statistic for a, b in zip(trained, rand)])
    # lower |rho| passes (docs/spec.md section 7); an attribution that ignored the weights would give rho = 1
    assert np.all(np.isfinite(rho)) and np.abs(rho).mean() < 0.5 and np.abs(rho).max() < 0.8, rho


# ----------------------------------------------------------------------------- 6. every method: contract
@pytest.mark.parametrize("method", BUILTINS)
def test_arrays_are_finite_non_negative_normalised_with_documented_shapes(method, t5_maps, t5_batch, t5):
    Q = t5[1].Q
    P = t5_batch.grids[0].num_regions
    for r, m in enumerate(t5_maps[method]):
        assert isinstance(m, MethodMaps) and m.method == method
        shapes = {"region": (P,), "C": (Q, P), "W": (len(t5_batch.token_positions[r]), P)}
        shapes["S"] = (len(t5_batch.answers[r]), P)
        arrays = m.arrays()
        if method == "occlusion":
            assert m.C is None and m.W is None and set(arrays) == {"region", "S"}
        else:
            assert set(arrays) == {"region", "C", "W", "S"}
        for name, x in arrays.items():
            assert x.shape == shapes[name], (name, x.shape)
            assert np.isfinite(x).all() and (x >= 0).all(), name
            np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-5, err_msg=name)
        if method != "occlusion":  # occlusion's region comes from p(y) drops, not from S
            np.testing.assert_allclose(m.region, region_from(m.S, t5_batch.is_eos[r]), atol=1e-6)


@pytest.mark.parametrize("method", [m for m in BUILTINS if m != "occlusion"])
def test_batched_equals_one_by_one_tiny(method, t5_maps, t5_batch, t5):
    """3 rows with different question lengths (7, 6, 8 prompt tokens) and answer lengths (3, 2, 5).
    (Occlusion is compared on the demo model: on the tiny model its drops are float32 noise.)"""
    lm, _ = t5
    assert len({len(p) for p in t5_batch.prompt_ids}) == 3 and len({len(a) for a in t5_batch.answers}) == 3
    for r in range(len(t5_batch)):
        one = get_attribution(method).compute(lm, _row(t5_batch, r))[0].arrays()
        for name, x in t5_maps[method][r].arrays().items():
            np.testing.assert_allclose(x, one[name], atol=1e-5, rtol=0, err_msg=f"{method} row {r} {name}")


@pytest.fixture(scope="module")
def demo_batch(demo, easy_vqa_examples, demo_greedy):
    """3 easy-VQA rows, different question lengths; answers of 2 (greedy), 1 (</s>) and 4 steps."""
    lm, eng = demo
    g0, w = demo_greedy[0], demo_greedy[2][0]
    return make_batch(eng, easy_vqa_examples[:3], [g0, [eng.eos_id], [w, g0[0], w, eng.eos_id]])


@pytest.mark.parametrize("method", BUILTINS)
def test_batched_equals_one_by_one_demo(method, demo, demo_batch):
    """3 rows with different question lengths and answer lengths (2, 1, 4) on the trained demo model
    (sharp attention, so padding that leaks into a row shows)."""
    lm, _ = demo
    assert len({len(p) for p in demo_batch.prompt_ids}) == 3 and len({len(a) for a in demo_batch.answers}) == 3

    def run(batch):
        m = get_attribution(method)
        if method == "occlusion":
            m.max_blocks = 16  # 2 x 2 patch blocks: a quarter of the passes, the same batching
        return m.compute(lm, batch)

    maps = run(demo_batch)
    for r in range(len(demo_batch)):
        one = run(_row(demo_batch, r))[0].arrays()
        for name, x in maps[r].arrays().items():
            np.testing.assert_allclose(x, one[name], atol=1e-5, rtol=0, err_msg=f"{method} row {r} {name}")
