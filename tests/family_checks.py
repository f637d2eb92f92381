"""Checks every model family's tests run the same way (tests only): an attribution batch of prepared examples,
a method batched vs one row at a time, rollout/relevancy vs the independent reference
(``tests.attribution_reference``), and the grey image with one planted block for occlusion."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stcg.images import quantise
from stcg_model.attribution.base import AttributionBatch, get_attribution
from tests.attribution_reference import reference_copy, reference_maps

ROW_FIELDS = ("images", "grids", "prompt_ids", "answers", "token_positions", "is_eos")


def attribution_batch(eng, examples, answers, images=None) -> AttributionBatch:
    """The engine's prepared ``examples`` with the given ``answers`` (token ids), on their own images or ``images``."""
    prep = eng.prepare_batch(examples).prepared
    pixels = [p.pixels for p in prep] if images is None else list(images)
    return AttributionBatch(
        pixel_values=eng._pixel_values(pixels),
        images=pixels,
        grids=[p.grid for p in prep],
        prompt_ids=[eng.passes.prompt_ids(p) for p in prep],
        answers=[list(a) for a in answers],
        token_positions=[eng.passes.question_positions(p) for p in prep],
        is_eos=[np.array([t == eng.eos_id for t in a]) for a in answers],
        fill=eng.fill,
        to_pixels=eng._pixel_values,
    )


def assert_batched_equals_one_by_one(method: str, lm, batch: AttributionBatch) -> None:
    """Every row's maps of ``method`` on the whole batch equal those of the row alone; all finite, >= 0, rows
    summing to 1."""
    whole = get_attribution(method).compute(lm, batch)
    for r in range(len(batch)):
        one = dataclasses.replace(
            batch, pixel_values=batch.pixel_values[r : r + 1], **{f: [getattr(batch, f)[r]] for f in ROW_FIELDS}
        )
        alone = get_attribution(method).compute(lm, one)[0].arrays()
        for name, x in whole[r].arrays().items():
            assert np.isfinite(x).all() and (x >= 0).all(), (method, name)
            np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-5)
            np.testing.assert_allclose(x, alone[name], atol=1e-5, err_msg=f"{method} row {r} {name}")


def assert_equals_reference(method: str, lm, eng, batch: AttributionBatch, atol: float = 1e-5) -> None:
    """``rollout`` or ``relevancy`` on the batch equal the float64 independent reference, row by row."""
    ref = reference_copy(lm.model, torch.float64)
    maps = get_attribution(method).compute(lm, batch)
    for r in range(len(batch)):
        want = reference_maps(
            ref,
            method,
            batch.pixel_values[r : r + 1],
            batch.prompt_ids[r],
            batch.answers[r],
            batch.token_positions[r],
            batch.is_eos[r],
            batch.grids[r].num_regions if eng.Q is None else eng.Q,  # Qwen-VL at its own resolution: Q = P
        )
        got = maps[r].arrays()
        diff = {k: float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in want}
        assert max(diff.values()) < atol, (r, diff)


def planted_images(eng, side: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A ``side`` px image of the engine's fill grey with one green block at grid row 2, column 1, the all-grey
    image, and that block's region index: greying any other block leaves the image as it was."""
    G = eng.grid_side
    fill = quantise(np.asarray(eng.fill, dtype=np.float32))
    cell = side // G
    img = np.broadcast_to(fill, (side, side, 3)).copy()
    img[2 * cell : 3 * cell, cell : 2 * cell] = (0, 200, 0)
    return img, np.broadcast_to(fill, img.shape).copy(), 2 * G + 1


def assert_occlusion_finds(region: int, lm, batch: AttributionBatch) -> None:
    """Occlusion on the batch's one row gives all of its mass to ``region``."""
    m = get_attribution("occlusion").compute(lm, batch)[0]
    assert m.C is None and m.W is None
    assert int(np.argmax(m.region)) == region
    assert abs(m.region[region] - 1.0) < 1e-6
    assert np.abs(np.delete(m.region, region)).max() < 1e-6


def assert_engine_batched_equals_one_by_one(eng, examples, batch_size: int = 4) -> list:
    """Every array, answer and perturbed answer of ``examples`` explained ``batch_size`` at a time equal those of
    each explained alone (2e-5); returns the batched graphs."""
    batched = eng.explain(examples, batch_size=batch_size)
    for ex, g in zip(examples, batched):
        one = eng.explain([ex], batch_size=1)[0]
        assert one.answer == g.answer and one.perturbed_answers == g.perturbed_answers
        for name, x in g.arrays().items():
            np.testing.assert_allclose(x, one.arrays()[name], atol=2e-5, err_msg=name)
    return batched


def qwen_generate_ids(lm, eng, enc) -> list[int]:
    """Qwen's own greedy ``generate`` on processor inputs ``enc`` of one row (at least 2 new tokens, the
    placeholder banned), as the engine's answer ids; the model's cached M-RoPE offsets are reset after."""
    gen = lm.model.generate(
        **enc,
        max_new_tokens=eng.max_new_tokens,
        min_new_tokens=2,
        do_sample=False,
        pad_token_id=eng.pad_id,
        suppress_tokens=eng.passes.banned_tokens(),
    )
    lm.model.model.rope_deltas = None
    return eng.passes.trim_answer(gen[0, enc["input_ids"].shape[1] :].tolist())
