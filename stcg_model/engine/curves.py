"""Deletion curves: ``p(y)`` of the clean answer as image regions are greyed (docs/spec.md section 4).

Regions are greyed cumulatively in ``steps`` equal steps (``round(s P / steps)`` regions after step
``s``), in decreasing clean attribution order (ties to the lower region index) and in a seeded random
order. Step 0 is the clean image (its ``p(y)`` is ``p_clean``, not recomputed); the last step (every
region grey) is the same image for both orders, so it is made and scored once.

``deletion_images`` is pure (which images to make); ``deletion_curves`` scores them with
``ModelPasses.answer_logprobs`` in batched chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stcg.images import quantise
from stcg_model.families.inputs import PreparedExample
from stcg_model.families.passes import ModelPasses
from stcg_model.maths.seeding import rng_for


def deletion_images(
    ex: PreparedExample, attribution: np.ndarray, steps: int, seed: int, fill: np.ndarray
) -> list[np.ndarray]:
    """The ``2 steps - 1`` (h, w, 3) uint8 images of one example's curves, in this order: steps
    1..steps-1 by attribution, steps 1..steps-1 by the random order, then every region grey.
    ``attribution`` (P,); ``fill`` the uint8 RGB grey."""
    P = ex.grid.num_regions
    order = np.lexsort((np.arange(P), -attribution))
    rand = rng_for(seed, ex.ex.example_id, "deletion_random").permutation(P)
    images = []
    for o in (order, rand):
        for s in range(1, steps):
            k = int(round(s * P / steps))
            images.append(ex.grid.fill_regions(ex.pixels.copy(), o[:k], fill))
    images.append(ex.grid.fill_regions(ex.pixels.copy(), order, fill))  # s = steps: all regions
    return images


def split_curves(probs: Sequence[float], steps: int) -> tuple[list[float], list[float]]:
    """One example's ``2 steps - 1`` probabilities (``deletion_images`` order) -> (by attribution, random),
    each ``steps`` values for steps 1..steps (the all-grey value shared)."""
    vals = list(probs)
    full = vals[-1]
    return vals[: steps - 1] + [full], vals[steps - 1 : 2 * steps - 2] + [full]


def deletion_curves(
    passes: ModelPasses,
    prepared: Sequence[PreparedExample],
    answers: Sequence[list[int]],
    attributions: Sequence[np.ndarray],
    steps: int,
    seed: int,
    fill: Sequence[float],
) -> list[tuple[list[float], list[float]]]:
    """Per example, ``p(y)`` of its clean answer after steps 1..steps, (by attribution, random order).

    ``fill`` is the grey as RGB in [0, 1] (the processor's mean colour). All examples' images are
    scored in chunks of about the rows of the main pass (the same memory bound)."""
    grey = quantise(np.asarray(fill, dtype=np.float32))
    rows, row_answers = [], []
    for ex, y, attr in zip(prepared, answers, attributions):
        rows.extend((ex, image) for image in deletion_images(ex, attr, steps, seed, grey))
        row_answers.extend([y] * (2 * steps - 1))
    probs = []
    chunk = max(2 * steps, 7 * len(prepared))
    for s in range(0, len(rows), chunk):
        lps = passes.answer_logprobs(rows[s : s + chunk], row_answers[s : s + chunk])
        probs.extend(float(np.exp(lp.astype(np.float64).sum())) for lp in lps)
    per = 2 * steps - 1
    return [split_curves(probs[i * per : (i + 1) * per], steps) for i in range(len(prepared))]
