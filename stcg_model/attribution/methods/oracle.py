"""``oracle``: the ground-truth mask as the region attribution. With ``random`` (``random_map.py``), a
reference explanation made from the ground truth, offered only when
examples carry masks (spec section 7): they test the protocol, not the model.

- ``oracle``: the mask itself, ``g / sum g`` (``g`` the share of each region inside the mask);
- ``random``: uniform random values, normalised, seeded by the example id and the image's bytes (a
  fresh draw for every image, the same on every machine).

A protocol that cannot rank ``oracle`` above ``random`` on deletion and insertion is broken (or the
testbed is). Both are region-level only (no ``C``, ``W`` or ``S``), like occlusion.
"""

from __future__ import annotations

from stcg_model.attribution.base import AttributionMethod, MethodMaps, masks_of, register_attribution
from stcg_model.maths.grounding import oracle


@register_attribution
class Oracle(AttributionMethod):
    """The ground-truth mask as the region attribution (``stcg_model.maths.grounding.oracle``)."""

    name = "oracle"
    needs_masks = True
    description = "reference: the ground-truth mask itself (datasets with masks only)"

    def compute(self, lm, batch):
        return [MethodMaps(self.name, oracle(g)) for g in masks_of(batch, self.name)]
