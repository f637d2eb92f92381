"""Reference explanations made from the ground truth, offered only when examples carry masks (spec
section 7): they test the protocol, not the model.

- ``oracle``: the mask itself, ``g / sum g`` (``g`` the share of each region inside the mask);
- ``random``: uniform random values, normalised, seeded by the example id and the image's bytes (a
  fresh draw for every image, the same on every machine).

A protocol that cannot rank ``oracle`` above ``random`` on deletion and insertion is broken (or the
testbed is). Both are region-level only (no ``C``, ``W`` or ``S``), like occlusion.
"""

from __future__ import annotations

import hashlib

import numpy as np

from stcg.errors import StcgError
from stcg_model.attribution.base import AttributionBatch, AttributionMethod, MethodMaps, register_attribution
from stcg_model.grounding import oracle, random_attribution


def _masks(batch: AttributionBatch, name: str) -> list[np.ndarray]:
    gt = batch.gt or [None] * len(batch)
    if any(g is None for g in gt):
        raise StcgError(f"attribution method {name!r} needs a ground-truth mask for every example")
    return [np.asarray(g, dtype=np.float64) for g in gt]


@register_attribution
class Oracle(AttributionMethod):
    """The ground-truth mask as the region attribution (``stcg_model.grounding.oracle``)."""

    name = "oracle"
    needs_masks = True
    description = "reference: the ground-truth mask itself (datasets with masks only)"

    def compute(self, lm, batch):
        return [MethodMaps(self.name, oracle(g)) for g in _masks(batch, self.name)]


@register_attribution
class Random(AttributionMethod):
    """Seeded uniform random region values, normalised: the floor every method should clear."""

    name = "random"
    needs_masks = True
    description = "reference: seeded random region values (datasets with masks only)"

    def compute(self, lm, batch):
        keys = batch.keys or [str(r) for r in range(len(batch))]
        out = []
        for r, g in enumerate(_masks(batch, self.name)):
            image = np.ascontiguousarray(batch.images[r])
            key = f"{keys[r]}:{hashlib.sha256(image.tobytes()).hexdigest()[:16]}"
            out.append(MethodMaps(self.name, random_attribution(len(g), 0, key)))
        return out
