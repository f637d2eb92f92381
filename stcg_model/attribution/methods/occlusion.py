"""``occlusion``: the perturbation reference, greying b x b patch blocks (docs/spec.md section 6)."""

from __future__ import annotations

import math

import numpy as np
import torch

from stcg.images import quantise
from stcg_model.attribution.base import AttributionMethod, MethodMaps, normalised, register_attribution, subset_batch
from stcg_model.families.registry import family_for
from stcg_model.maths.regions import as_shape


def occlusion_block_side(grid, max_blocks: int = 64) -> int:
    """The smallest block side ``b`` (in patches) giving at most ``max_blocks`` blocks on a grid (its side
    ``G`` or ``(rows, cols)``)."""
    n_rows, n_cols = as_shape(grid)
    b = 1
    while math.ceil(n_rows / b) * math.ceil(n_cols / b) > max_blocks:
        b += 1
    return b


def occlusion_blocks(grid, b: int) -> list[np.ndarray]:
    """Region indices of each b x b block of a grid (its side ``G`` or ``(rows, cols)``; row-major; edge
    blocks may be smaller)."""
    n_rows, n_cols = as_shape(grid)
    blocks = []
    for r0 in range(0, n_rows, b):
        for c0 in range(0, n_cols, b):
            rows, cols = np.meshgrid(
                np.arange(r0, min(r0 + b, n_rows)), np.arange(c0, min(c0 + b, n_cols)), indexing="ij"
            )
            blocks.append((rows * n_cols + cols).ravel())
    return blocks


@register_attribution
class Occlusion(AttributionMethod):
    """The perturbation reference: ``a[p] = (p(y|I) - p(y|I with p's block greyed))+``, normalised;
    ``S[t]`` from each step's log-probability drop. Region-level only: no ``C``, no ``W``.

    Log-probabilities are float64 and the drop is taken from their difference, so the drops of a
    near-certain answer (p = 1 - 1e-7, drops of 1e-9) are not rounded away."""

    name = "occlusion"
    description = "occlusion of b x b patch blocks (at most 64 blocks), region-level only"
    max_blocks = 64
    chunk_rows = 64

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        clean = fam.logprobs(batch.prompt_ids, batch.answers, batch.pixel_values)
        fill = quantise(np.asarray(batch.fill, dtype=np.float32))
        jobs = []  # (row, block regions)
        images = []
        for r, (img, grid) in enumerate(zip(batch.images, batch.grids)):
            b = occlusion_block_side(grid.shape, self.max_blocks)
            for block in occlusion_blocks(grid.shape, b):
                jobs.append((r, block))
                images.append(grid.fill_regions(img.copy(), block, fill))
        logps: list[np.ndarray] = []
        for s in range(0, len(jobs), self.chunk_rows):
            rows = [r for r, _ in jobs[s : s + self.chunk_rows]]
            sub = subset_batch(batch, rows)
            logps.extend(fam.logprobs(sub.prompt_ids, sub.answers, batch.to_pixels(images[s : s + self.chunk_rows])))
        out = []
        for r in range(len(batch)):
            P = batch.grids[r].num_regions
            T = len(batch.answers[r])
            drop_p = np.zeros(P)
            drop_step = np.zeros((T, P))
            lp_clean = float(clean[r].astype(np.float64).sum())
            for (jr, block), lp in zip(jobs, logps):
                if jr != r:
                    continue
                # p - p' = -p expm1(log p' - log p): exact where both round to 1 (a drop of 1e-9 survives)
                drop_p[block] = max(
                    0.0, -math.exp(lp_clean) * math.expm1(float(lp.astype(np.float64).sum()) - lp_clean)
                )
                drop_step[:, block] = np.clip(clean[r].astype(np.float64) - lp.astype(np.float64), 0.0, None)[:, None]
            out.append(MethodMaps(self.name, normalised(drop_p), None, None, normalised(drop_step)))
        return out
