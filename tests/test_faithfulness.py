"""Faithfulness scores (deletion, insertion, comprehensiveness, sufficiency) and the sanity check."""

from __future__ import annotations

import numpy as np
import pytest

from stcg_model.maths.faithfulness import (
    attribution_order,
    auc,
    faithfulness_scores,
    random_order,
    step_counts,
    top_count,
)


def _prob_of_kept_mass(weights):
    """A 'model' whose p(y) is the share of the (hidden) region weights left visible."""
    w = np.asarray(weights, dtype=np.float64)

    def prob_fn(masks):
        return [float(w[m].sum() / w.sum()) for m in masks]

    return prob_fn


def test_orders_and_counts():
    a = np.array([0.1, 0.5, 0.5, 0.0])
    assert attribution_order(a).tolist() == [1, 2, 0, 3]  # ties to the lower index
    assert step_counts(64, 10) == [0, 6, 13, 19, 26, 32, 38, 45, 51, 58, 64]
    assert top_count(64, 0.05) == 3 and top_count(4, 0.05) == 1
    assert auc([1.0, 1.0]) == pytest.approx(1.0) and auc([1.0, 0.0]) == pytest.approx(0.5)
    r1, r2 = random_order(0, "ex", 64), random_order(0, "ex", 64)
    assert (r1 == r2).all() and sorted(r1.tolist()) == list(range(64))


def test_a_perfect_attribution_beats_random_and_an_inverted_one_loses():
    rng = np.random.default_rng(0)
    P = 64
    w = rng.gamma(0.3, size=P)  # a few regions matter
    prob = _prob_of_kept_mass(w)
    s = faithfulness_scores({"true": w, "inverted": -w}, 1.0, prob, seed=0, example_id="x", steps=10)
    t, inv = s["true"], s["inverted"]
    assert t["deletion_ratio"] < 0.7 < 1.0 < inv["deletion_ratio"]
    assert t["insertion_ratio"] > 1.3 and inv["insertion_ratio"] < 1.0
    assert t["comprehensiveness"] > inv["comprehensiveness"]
    assert t["sufficiency"] < inv["sufficiency"]
    assert t["deletion_auc_random"] == inv["deletion_auc_random"]  # one random order per example


def test_scores_by_hand_on_four_regions():
    # P = 4, steps = 2: deletion removes 0, 2, 4 regions; insertion reveals 0, 2, 4
    w = np.array([4.0, 3.0, 2.0, 1.0])
    prob = _prob_of_kept_mass(w)
    s = faithfulness_scores({"m": w}, 1.0, prob, seed=0, example_id="x", steps=2, fractions=(0.25, 0.5))
    m = s["m"]
    assert m["deletion_auc"] == pytest.approx(auc([1.0, 0.3, 0.0]))
    assert m["insertion_auc"] == pytest.approx(auc([0.0, 0.7, 1.0]))
    # top 25% = region 0 (0.4 of the mass), top 50% = regions 0, 1 (0.7)
    assert m["comprehensiveness"] == pytest.approx(np.mean([0.4, 0.7]))
    assert m["sufficiency"] == pytest.approx(np.mean([1 - 0.4, 1 - 0.7]))


def test_attention_deletion_equals_the_engines_curve(tiny_checkpoint):
    """The scoring pass reproduces STCGraph.deletion_auc for raw attention (same order, same images)."""
    from PIL import Image

    from stcg_model.attribution.base import AttributionBatch, MethodMaps
    from stcg_model.attribution.scoring import score_batch
    from stcg_model.engine.core import STCGEngine, VQAInput
    from stcg_model.families.loading import load_model

    lm = load_model(tiny_checkpoint, device="cpu")
    rng = np.random.default_rng(1)
    exs = [
        VQAInput(f"e{i}", Image.fromarray(rng.integers(0, 255, (30 + 4 * i, 40, 3), dtype=np.uint8)), q)
        for i, q in enumerate(["what color is it?", "is there a circle?"])
    ]
    eng = STCGEngine(lm, "center_mask", deletion_steps=4)
    graphs = eng.explain(exs)
    prep = eng.prepare_batch(exs).prepared
    tok = lm.processor.tokenizer
    answers = [tok.convert_tokens_to_ids(list(g.answer_tokens)) for g in graphs]
    assert not any(t == tok.unk_token_id for a in answers for t in a)  # answer tokens round-trip to ids
    batch = AttributionBatch(
        pixel_values=eng._pixel_values([p.pixels for p in prep]),
        images=[p.pixels for p in prep],
        grids=[p.grid for p in prep],
        prompt_ids=[[eng.image_token_id] * eng.Q + p.token_ids for p in prep],
        answers=answers,
        token_positions=[eng.Q + p.q_index for p in prep],
        is_eos=[np.array([t == eng.eos_id for t in a]) for a in answers],
        fill=eng.fill,
        to_pixels=eng._pixel_values,
    )
    maps = {"attention": [MethodMaps("attention", g.attribution) for g in graphs]}
    scores = score_batch(lm, batch, maps, [e.example_id for e in exs], seed=0, steps=4)
    for g, s in zip(graphs, scores):
        d, d_rand = g.deletion_auc()
        assert s["attention"]["deletion_auc"] == pytest.approx(d, abs=1e-6)
        assert s["attention"]["deletion_auc_random"] == pytest.approx(d_rand, abs=1e-6)


def test_randomised_copy_changes_the_language_model_and_qformer_only(tiny_checkpoint):
    import torch

    from stcg_model.attribution.sanity import cascade, randomised_copy, rank_correlations
    from stcg_model.families.loading import load_model

    lm = load_model(tiny_checkpoint, device="cpu")
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    rnd = randomised_copy(lm, seed=0)
    after = dict(rnd.model.named_parameters())
    for n, p in lm.model.named_parameters():
        assert torch.equal(p, before[n])  # the original is untouched
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert not any(n.startswith("vision_model") for n in changed)
    assert any(n.startswith("language_model.decoder") for n in changed)
    assert any(n.startswith("qformer.encoder.layer") for n in changed)
    one = randomised_copy(lm, stages=1, seed=0)
    changed_one = {n for n, p in one.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed_one and changed_one < changed  # the cascade starts at the top only
    assert cascade(lm.model)[0] is lm.model.language_model.lm_head
    rho = rank_correlations([np.arange(5.0), np.arange(5.0)], [np.arange(5.0), -np.arange(5.0)])
    assert rho.tolist() == pytest.approx([1.0, -1.0])
