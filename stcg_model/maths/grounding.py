"""Ground-truth metrics of an explanation against a mask of the evidence (docs/spec.md section 7; CLEVR-XAI,
Arras, Osman, Samek 2022). Pure numpy: arrays in, numbers out.

``g`` (P,) is the share of each region that lies in the mask (``region_shares``); ``a`` (P,) a method's
region attribution (non-negative). A region is *in* the mask when ``g > 0``; ``K`` is how many are.
"""

from __future__ import annotations

import numpy as np


def region_shares(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(rows * cols,) float in [0, 1], row-major: the share of each region's pixels that lie in ``mask``
    ((H, W) bool), the regions being the ``grid`` of blocks over the image with the edges of
    ``stcg_model.maths.regions.RegionGrid`` (row ``r`` spans pixel rows ``round(r H / rows)`` up to
    ``round((r + 1) H / rows)``), so a share is of the same pixels a region's box covers."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols = grid
    h, w = mask.shape
    ry = np.searchsorted(np.round(np.arange(rows + 1) * h / rows), np.arange(h), side="right") - 1
    cx = np.searchsorted(np.round(np.arange(cols + 1) * w / cols), np.arange(w), side="right") - 1
    inside = np.zeros((rows, cols))
    np.add.at(inside, (ry[:, None], cx[None, :]), mask.astype(float))
    area = np.bincount(ry, minlength=rows)[:, None] * np.bincount(cx, minlength=cols)[None, :]
    return (inside / area).reshape(-1)


def chance(g: np.ndarray) -> float:
    """The chance level of every metric below: the share of regions in the mask, ``K / P``."""
    g = np.asarray(g)
    return float(np.count_nonzero(g > 0) / g.size)


def mass_accuracy(a: np.ndarray, g: np.ndarray) -> float:
    """Relevance mass accuracy: the share of the attribution inside the mask, ``sum_p a[p] [g[p] > 0] /
    sum_p a[p]``; NaN for an all-zero attribution (it points nowhere)."""
    a = np.asarray(a, dtype=np.float64)
    total = a.sum()
    return float(a[np.asarray(g) > 0].sum() / total) if total > 0 else float("nan")


def rank_accuracy(a: np.ndarray, g: np.ndarray) -> float:
    """Relevance rank accuracy: the share of the top-K regions of ``a`` that lie in the mask, K = the number
    of regions in it. Ties are broken by region index (the first region wins), as ``np.argsort`` does
    stably; NaN for an empty mask."""
    inside = np.asarray(g) > 0
    k = int(inside.sum())
    if k == 0:
        return float("nan")
    top = np.argsort(-np.asarray(a, dtype=np.float64), kind="stable")[:k]
    return float(inside[top].mean())


def pointing_game(a: np.ndarray, g: np.ndarray) -> float:
    """1.0 when the top region of ``a`` (the first one on a tie) lies in the mask, else 0.0."""
    return float(np.asarray(g)[int(np.argmax(np.asarray(a)))] > 0)


def grounding_scores(a: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """An explanation's ground-truth metrics against the mask shares ``g``: ``mass_accuracy``,
    ``rank_accuracy``, ``pointing_game`` and their ``chance`` level (what ``Explanation`` nodes store)."""
    return {
        "mass_accuracy": mass_accuracy(a, g),
        "rank_accuracy": rank_accuracy(a, g),
        "pointing_game": pointing_game(a, g),
        "chance": chance(g),
    }


def oracle(g: np.ndarray) -> np.ndarray:
    """The reference explanation that is the mask itself: ``g / sum g``."""
    g = np.asarray(g, dtype=np.float64)
    return g / g.sum() if g.sum() > 0 else np.full(g.shape, 1.0 / g.size)


def random_attribution(n_regions: int, seed: int, key: str) -> np.ndarray:
    """The seeded random reference explanation of example ``key``: uniform values, normalised."""
    import hashlib

    digest = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")
    a = np.random.default_rng(digest).random(n_regions)
    return a / a.sum()


__all__ = [
    "region_shares",
    "chance",
    "mass_accuracy",
    "rank_accuracy",
    "pointing_game",
    "grounding_scores",
    "oracle",
    "random_attribution",
]
