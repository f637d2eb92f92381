"""The InstructBLIP family's interface (``stcg_model.families.registry``): BLIP-2's module layout (vision tower,
Q-Former, projection, T5 or a causal language model), so its grid, slots, hook points and sanity cascade are
BLIP-2's; its loading and passes add the Q-Former's instruction."""

from __future__ import annotations

from stcg_model.families.blip2.family import cascade, grid_side, hook_layer_counts, image_slots, vision_tower
from stcg_model.families.instructblip.loading import load, weightless
from stcg_model.families.instructblip.passes import passes_for

__all__ = [
    "cascade",
    "grid_side",
    "hook_layer_counts",
    "image_slots",
    "load",
    "passes_for",
    "vision_tower",
    "weightless",
]
