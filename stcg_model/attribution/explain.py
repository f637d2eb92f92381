"""Every requested method's explanation and faithfulness scores, attached to a batch of STCGraphs.

The engine hands over, per example, what it already made: the clean 8-bit image and each
perturbed one, the language-model input, the clean answer. For each method beyond ``attention``
(whose maps are the graph's own arrays) this computes the maps on the clean image and, with the
clean answer teacher-forced, on every perturbed image (for ``dW`` and stability under the method),
then scores every method, ``attention`` included, with one deduplicated faithfulness pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stcg_model.attribution.base import AttributionBatch, MethodMaps, get_attribution, registry_order
from stcg_model.attribution.scoring import score_batch
from stcg_model.graph import MethodResult, STCGraph
from stcg_model.maths.grounding import grounding_scores


@dataclass
class ExampleRows:
    """One example as the methods need it (shapes: images (h, w, 3) uint8; ``perturbed`` in the
    graph's perturbation order, each with the clean answer to explain)."""

    example_id: str
    image: np.ndarray
    grid: object  # RegionGrid
    prompt_ids: list[int]
    token_positions: np.ndarray
    answer: list[int]
    is_eos: np.ndarray
    perturbed: list[np.ndarray]
    gt: np.ndarray | None = None  # (P,) ground-truth mask share per region, when the example has a mask


def _batch(rows: Sequence[ExampleRows], images: Sequence[np.ndarray], to_pixels, fill) -> AttributionBatch:
    return AttributionBatch(
        pixel_values=to_pixels(list(images)),
        images=list(images),
        grids=[r.grid for r in rows],
        prompt_ids=[r.prompt_ids for r in rows],
        answers=[r.answer for r in rows],
        token_positions=[r.token_positions for r in rows],
        is_eos=[r.is_eos for r in rows],
        fill=fill,
        to_pixels=to_pixels,
        gt=[r.gt for r in rows],
        keys=[r.example_id for r in rows],
    )


def _compute(lm, name: str, rows, images, to_pixels, fill, chunk: int) -> list[MethodMaps]:
    """``name``'s maps of ``rows`` on ``images``, ``chunk`` rows per call (memory bound for gradients)."""
    method = get_attribution(name)
    out: list[MethodMaps] = []
    for s in range(0, len(rows), chunk):
        out.extend(method.compute(lm, _batch(rows[s : s + chunk], images[s : s + chunk], to_pixels, fill)))
    return out


def attach_methods(
    lm,
    graphs: Sequence[STCGraph],
    rows: Sequence[ExampleRows],
    names: Sequence[str],
    to_pixels: Callable[[Sequence[np.ndarray]], torch.Tensor],
    fill: tuple[float, float, float],
    seed: int = 0,
    steps: int = 10,
    chunk: int = 32,
    stability_perturbation: str = "gaussian_noise",
) -> None:
    """Set ``graphs[i].methods`` to ``{method: MethodResult}`` for every name (``attention`` holds
    only its scores; its maps are the graph's arrays).

    A method with a token map (``W``) is computed under every perturbation (``dW`` under the
    method); a region-only method (occlusion) only under ``stability_perturbation``, the one its
    metrics use: its other ``region_pert`` rows are NaN."""
    others = [n for n in names if n != "attention"]
    kinds = list(graphs[0].perturbations) if graphs else []
    K = len(kinds)
    clean: dict[str, list[MethodMaps]] = {}
    for name in others:
        clean[name] = _compute(lm, name, list(rows), [r.image for r in rows], to_pixels, fill, chunk)
    pert: dict[str, list[list[MethodMaps | None]]] = {}
    for name in others:
        wanted = (
            range(K) if clean[name][0].W is not None else [k for k in range(K) if kinds[k] == stability_perturbation]
        )
        jobs = [(i, k) for i in range(len(rows)) for k in wanted]
        maps = (
            _compute(
                lm, name, [rows[i] for i, _ in jobs], [rows[i].perturbed[k] for i, k in jobs], to_pixels, fill, chunk
            )
            if jobs
            else []
        )
        pert[name] = [[None] * K for _ in rows]
        for (i, k), m in zip(jobs, maps):
            pert[name][i][k] = m
    scoring = {"attention": [MethodMaps("attention", g.attribution) for g in graphs], **clean}
    batch = _batch(rows, [r.image for r in rows], to_pixels, fill)
    scores = score_batch(lm, batch, scoring, [r.example_id for r in rows], seed=seed, steps=max(2, steps))
    for i, g in enumerate(graphs):
        if g.gt is not None:  # ground-truth metrics beside the protocol's (docs/spec.md section 7)
            for name in names:
                region = g.attribution if name == "attention" else clean[name][i].region
                # at the precision the map is stored in (float32), so the scores are what anyone
                # recomputes from the stored map (a float64 near-tie can round to a tie)
                scores[i][name].update(grounding_scores(np.asarray(region, np.float32), g.gt))
        methods = {"attention": MethodResult(region=g.attribution, scores=scores[i]["attention"])}
        for name in registry_order(others):  # the graph keeps the registry's order, stored with it
            m = clean[name][i]
            mine = pert[name][i]
            P = len(m.region)
            W_pert = np.stack([p.W for p in mine]) if K and m.W is not None else None
            region_pert = np.stack([np.full(P, np.nan) if p is None else p.region for p in mine]) if K else None
            methods[name] = MethodResult(
                region=m.region,
                C=m.C,
                W=m.W,
                S=m.S,
                W_pert=W_pert,
                region_pert=region_pert,
                scores=scores[i][name],
            )
        g.methods = methods
