"""The scenes model's training targets, read from the generator's scene description, and the heads
that use them (``training.scenes``): stage 1's per-region labels, stages 2-4's grounding targets and
loss, and the layout head. The heads are thrown away after training.
"""

from __future__ import annotations

import numpy as np
import torch

from stcg import scenes

GRID = scenes.SIZE // 8  # regions per side at patch size 8
CLASSES = [(s, c) for s in scenes.SHAPES for c in scenes.COLOURS]  # class k + 1; 0 = no object


def region_labels(scene: scenes.Scene, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 targets of one scene, each (grid * grid,) int64 in row-major region order:
    ``cover`` - the class of the object painting most of the region's pixels (0 when under 1/8 of it is
    painted); ``centre`` - the class of the object whose centre pixel lies in the region (0: none).
    Class k + 1 is ``CLASSES[k]``."""
    cell = scenes.SIZE // grid
    cover = np.zeros(grid * grid, np.int64)
    best = np.zeros(grid * grid)
    centre = np.zeros(grid * grid, np.int64)
    for o in scene.objects:
        k = CLASSES.index((o.shape, o.colour)) + 1
        share = scenes.object_mask(o).reshape(grid, cell, grid, cell).mean((1, 3)).reshape(-1)
        take = (share > best) & (share >= 1 / 8)
        cover[take], best[take] = k, share[take]
        centre[(o.cy // cell) * grid + o.cx // cell] = k
    return cover, centre


GROUNDING_SLOTS = 4  # per question token: (column, row) of the object it names; "left": both arguments' columns


def word_targets(scene: scenes.Scene, words: list[str], grid: int = GRID) -> np.ndarray:
    """Stage-2 grounding targets of one question, (len(words), 4) int64, -100 where none:

    - a shape or colour word that names exactly one object of the scene -> that object's region column
      and row (slots 0, 1);
    - the relation word ``left`` -> the columns of its first and second argument (slots 2, 3).
    """
    cell = scenes.SIZE // grid
    out = np.full((len(words), GROUNDING_SLOTS), -100, np.int64)
    for j, w in enumerate(words):
        if w in scenes.SHAPES or w in scenes.COLOURS:
            named = [o for o in scene.objects if w in (o.shape, o.colour)]
            if len(named) == 1:
                out[j, 0], out[j, 1] = named[0].cx // cell, named[0].cy // cell
        elif w == "left" and scene.family == "relation":
            a, b = ([o for o in scene.objects if o.shape == s][0] for s in scene.args)
            out[j, 2], out[j, 3] = a.cx // cell, b.cx // cell
    return out


class LayoutHead(torch.nn.Module):
    """Stage 2's auxiliary head: from the Q-Former's query outputs (B, Q, d), each region's learned
    embedding attends over the queries and predicts the region's ``cover`` class -> (B, P, classes).

    It asks the queries to keep what is where, which BLIP-2's own pretraining (image-text matching and
    captioning on real data) asks of them and the answer loss alone on a small testbed does not; it is
    thrown away after training."""

    def __init__(self, d: int, regions: int, heads: int, classes: int):
        super().__init__()
        self.regions = torch.nn.Parameter(torch.randn(regions, d) * 0.02)
        self.attend = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = torch.nn.LayerNorm(d)
        self.out = torch.nn.Linear(d, classes)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        r = self.regions.expand(queries.shape[0], -1, -1)
        h, _ = self.attend(r, queries, queries, need_weights=False)
        return self.out(self.norm(h + r))


def grounding_loss(word_logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy of the grounding head, (B, L, GROUNDING_SLOTS, grid) logits against (B, L, SLOTS) targets
    (-100: none), and the share of targets hit.

    The word slots (0, 1) and ``left``'s argument slots (2, 3) are averaged apart and summed, so that the
    two argument columns of a relation question weigh as much as all of a batch's word positions (in one
    joint mean they were a few per cent of it)."""
    loss = word_logits.new_zeros(())
    for slots in (slice(0, 2), slice(2, 4)):
        t = target[..., slots]
        if (t >= 0).any():
            loss = loss + torch.nn.functional.cross_entropy(
                word_logits[..., slots, :].flatten(0, 2), t.flatten(), ignore_index=-100
            )
    with torch.no_grad():
        hit = float((word_logits.argmax(-1) == target)[target >= 0].float().mean()) if (target >= 0).any() else 0.0
    return loss, hit
