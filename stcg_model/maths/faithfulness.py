"""Faithfulness of a region attribution, by what removing or keeping regions does to p(y) (docs/spec.md section 7).

For one example with clean answer ``y`` and a region attribution ``a`` (P,):

- deletion: grey the regions in decreasing ``a`` order, 0%, 100/D%, ..., 100% of them; ``p(y)`` at
  each step; area under that curve over the removed fraction (lower = more faithful); the same
  for a seeded random order, and the ratio of the two (< 1 better);
- insertion: start from the all-grey image and reveal regions in decreasing ``a`` order; AUC and
  ratio to the random order (> 1 better);
- comprehensiveness (ERASER, DeYoung et al. 2020): ``p(y|I) - p(y|I without the top f regions)``,
  averaged over f in 5/10/20/50% (higher better); sufficiency: ``p(y|I) - p(y|I with only the
  top f regions)`` (lower better).

The orders and images are pure functions (``plan_images``); the probabilities come from any
``prob_fn(rows) -> p`` that runs the model teacher-forced, in batches. Deletion uses exactly the
engine's order and step sizes, so for raw attention it reproduces ``STCGraph.deletion_curve``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stcg_model.maths.regions import auc
from stcg_model.maths.seeding import rng_for

FRACTIONS = (0.05, 0.10, 0.20, 0.50)


def attribution_order(attribution: np.ndarray) -> np.ndarray:
    """(P,) region indices by decreasing attribution, ties to the lower index (the engine's order)."""
    P = len(attribution)
    return np.lexsort((np.arange(P), -np.asarray(attribution)))


def random_order(seed: int, example_id: str, P: int) -> np.ndarray:
    """The seeded random order the engine's deletion curve uses."""
    return rng_for(seed, example_id, "deletion_random").permutation(P)


def step_counts(P: int, steps: int) -> list[int]:
    """Regions removed (or revealed) after step s = 0..steps: ``round(s P / steps)``."""
    return [int(round(s * P / steps)) for s in range(steps + 1)]


def top_count(P: int, fraction: float) -> int:
    """Regions in the top ``fraction`` (at least one)."""
    return max(1, int(round(fraction * P)))


@dataclass(frozen=True)
class ImageRequest:
    """One masked image to score: keep (True) or grey (False) each region; ``key`` names its use."""

    key: tuple
    keep: np.ndarray  # (P,) bool


RANDOM_ORDER = "<random order>"  # the key of the seeded random order every ratio divides by


def plan_images(
    orders: dict[str, np.ndarray], rand: np.ndarray, P: int, steps: int, fractions: Sequence[float] = FRACTIONS
) -> list[ImageRequest]:
    """Every distinct masked image the metrics of ``orders`` (method -> region order) need.

    Keys: ``("del", method, s)``, ``("ins", method, s)`` for steps 1..steps-1 (step 0 of deletion and
    the last of insertion are the clean image; the others are the all-grey image), ``("comp",
    method, f)``, ``("suff", method, f)``, and the random order under ``RANDOM_ORDER`` (not a method name: ``random`` is one). The
    all-grey image is ``("grey",)``. Images equal as masks are requested once (``dedupe``).
    """
    counts = step_counts(P, steps)
    reqs = [ImageRequest(("grey",), np.zeros(P, dtype=bool))]
    for name, order in {**orders, RANDOM_ORDER: rand}.items():
        for s in range(1, steps):
            k = counts[s]
            keep = np.ones(P, dtype=bool)
            keep[order[:k]] = False
            reqs.append(ImageRequest(("del", name, s), keep))
            reveal = np.zeros(P, dtype=bool)
            reveal[order[:k]] = True
            reqs.append(ImageRequest(("ins", name, s), reveal))
        if name == RANDOM_ORDER:
            continue
        for f in fractions:
            k = top_count(P, f)
            keep = np.ones(P, dtype=bool)
            keep[order[:k]] = False
            reqs.append(ImageRequest(("comp", name, f), keep))
            only = np.zeros(P, dtype=bool)
            only[order[:k]] = True
            reqs.append(ImageRequest(("suff", name, f), only))
    return reqs


def dedupe(reqs: Sequence[ImageRequest]) -> tuple[list[np.ndarray], dict[tuple, int]]:
    """Distinct masks and, per request key, the index of its mask."""
    masks, index, where = [], {}, {}
    for r in reqs:
        sig = r.keep.tobytes()
        if sig not in index:
            index[sig] = len(masks)
            masks.append(r.keep)
        where[r.key] = index[sig]
    return masks, where


def summarise(
    p_clean: float, probs: Sequence[float], where: dict[tuple, int], methods: Sequence[str], steps: int, fractions
) -> dict[str, dict[str, float]]:
    """Per method: deletion/insertion AUC and their random counterparts and ratios, comprehensiveness,
    sufficiency (means over ``fractions``), from the probabilities of the planned masks."""
    p = lambda key: float(probs[where[key]])  # noqa: E731
    grey = p(("grey",))

    def curves(name):
        dele = [p_clean] + [p(("del", name, s)) for s in range(1, steps)] + [grey]
        ins = [grey] + [p(("ins", name, s)) for s in range(1, steps)] + [p_clean]
        return dele, ins

    r_del, r_ins = curves(RANDOM_ORDER)
    out = {}
    for name in methods:
        d, i = curves(name)
        d_auc, i_auc, rd, ri = auc(d), auc(i), auc(r_del), auc(r_ins)
        out[name] = {
            "deletion_auc": d_auc,
            "deletion_auc_random": rd,
            "deletion_ratio": d_auc / rd if rd > 0 else float("nan"),
            "insertion_auc": i_auc,
            "insertion_auc_random": ri,
            "insertion_ratio": i_auc / ri if ri > 0 else float("nan"),
            "comprehensiveness": float(np.mean([p_clean - p(("comp", name, f)) for f in fractions])),
            "sufficiency": float(np.mean([p_clean - p(("suff", name, f)) for f in fractions])),
        }
    return out


def faithfulness_scores(
    attributions: dict[str, np.ndarray],
    p_clean: float,
    prob_fn: Callable[[list[np.ndarray]], list[float]],
    seed: int,
    example_id: str,
    steps: int = 10,
    fractions: Sequence[float] = FRACTIONS,
) -> dict[str, dict[str, float]]:
    """Per method: the scores of the module docstring for one example.

    ``attributions`` maps a method name to its region attribution (P,); ``prob_fn(masks)`` returns
    ``p(y)`` of the clean answer on the image with each (P,) keep-mask applied (greyed where False).
    """
    P = len(next(iter(attributions.values())))
    orders = {m: attribution_order(a) for m, a in attributions.items()}
    rand = random_order(seed, example_id, P)
    masks, where = dedupe(plan_images(orders, rand, P, steps, fractions))
    probs = prob_fn(masks)
    return summarise(p_clean, probs, where, list(attributions), steps, fractions)
