"""Faithfulness scores of every method's region attribution, for a batch, in batched model passes.

The masks of all examples and methods of a batch (``stcg_model.maths.faithfulness.plan_images``) are
made into images and scored with the clean answer teacher-forced, ``chunk_rows`` images per pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stcg.images import quantise
from stcg_model.attribution.base import AttributionBatch, MethodMaps, subset_batch
from stcg_model.families.registry import family_for
from stcg_model.maths.faithfulness import (
    FRACTIONS,
    attribution_order,
    dedupe,
    plan_images,
    random_order,
    summarise,
)


def score_batch(
    lm,
    batch: AttributionBatch,
    maps: dict[str, Sequence[MethodMaps]],
    example_ids: Sequence[str],
    seed: int = 0,
    steps: int = 10,
    fractions: Sequence[float] = FRACTIONS,
    chunk_rows: int = 64,
) -> list[dict[str, dict[str, float]]]:
    """Per batch row: ``{method: {deletion_auc, ..., sufficiency}}`` (see ``stcg_model.maths.faithfulness``)."""
    fam = family_for(lm).passes_for(lm)
    clean = fam.logprobs(batch.prompt_ids, batch.answers, batch.pixel_values)
    p_clean = [float(np.exp(lp.astype(np.float64).sum())) for lp in clean]
    fill = quantise(np.asarray(batch.fill, dtype=np.float32))
    plans, rows, images = [], [], []
    for r in range(len(batch)):
        P = batch.grids[r].num_regions
        orders = {m: attribution_order(maps[m][r].region) for m in maps}
        masks, where = dedupe(plan_images(orders, random_order(seed, example_ids[r], P), P, steps, fractions))
        plans.append((len(images), where))
        for keep in masks:
            rows.append(r)
            images.append(batch.grids[r].fill_regions(batch.images[r].copy(), np.flatnonzero(~keep), fill))
    probs: list[float] = []
    for s in range(0, len(images), chunk_rows):
        sub = subset_batch(batch, rows[s : s + chunk_rows])
        lps = fam.logprobs(sub.prompt_ids, sub.answers, batch.to_pixels(images[s : s + chunk_rows]))
        probs.extend(float(np.exp(lp.astype(np.float64).sum())) for lp in lps)
    out = []
    for r, (start, where) in enumerate(plans):
        n = len(set(where.values()))
        out.append(summarise(p_clean[r], probs[start : start + n], where, list(maps), steps, fractions))
    return out
