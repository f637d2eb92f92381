"""``random``: seeded uniform random region values, normalised; a reference offered only with
ground-truth masks (see ``oracle``)."""

from __future__ import annotations

import hashlib

import numpy as np

from stcg_model.attribution.base import AttributionMethod, MethodMaps, masks_of, register_attribution
from stcg_model.maths.grounding import random_attribution


@register_attribution
class Random(AttributionMethod):
    """Seeded uniform random region values, normalised: the floor every method should clear."""

    name = "random"
    needs_masks = True
    description = "reference: seeded random region values (datasets with masks only)"

    def compute(self, lm, batch):
        keys = batch.keys or [str(r) for r in range(len(batch))]
        out = []
        for r, g in enumerate(masks_of(batch, self.name)):
            image = np.ascontiguousarray(batch.images[r])
            key = f"{keys[r]}:{hashlib.sha256(image.tobytes()).hexdigest()[:16]}"
            out.append(MethodMaps(self.name, random_attribution(len(g), 0, key)))
        return out
