"""The LLaVA family's interface (``stcg_model.families.registry``): what the family-blind platform calls."""

from __future__ import annotations

import torch

from stcg_model.families.llava.loading import load, weightless
from stcg_model.families.llava.passes import passes_for
from stcg_model.families.llava.points import hook_layer_counts
from stcg_model.families.llava.slots import grid_side, image_slots


def vision_tower(model) -> torch.nn.Module:
    """The vision encoder (the gradient methods run it without autograd: ``chains.vision_as_leaf``)."""
    return model.model.vision_tower


def cascade(model) -> list[torch.nn.Module]:
    """The re-initialisation order for the sanity check, top layer first: the head, the language model's
    layers, then the projector (the vision tower stays, as BLIP-2's does)."""
    return [model.lm_head, *reversed(model.model.language_model.layers), model.model.multi_modal_projector]


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
