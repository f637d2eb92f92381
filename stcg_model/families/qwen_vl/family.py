"""The Qwen2-VL / Qwen2.5-VL family's interface (``stcg_model.families.registry``): what the family-blind platform
calls. Images run at one square side (``pixels.image_side``), so every image has ``G x G`` merged blocks."""

from __future__ import annotations

import torch

from stcg_model.families.qwen_vl.loading import load, weightless
from stcg_model.families.qwen_vl.passes import passes_for
from stcg_model.families.qwen_vl.pixels import QwenPixels, image_side, unit


def grid_side(config) -> int:
    """The region grid side ``G``: merged 2 x 2 patch blocks per side of the square image."""
    return image_side(config) // unit(config)


def image_slots(config) -> int:
    """``Q = G * G``: one ``<|image_pad|>`` slot per merged block."""
    return grid_side(config) ** 2


def hook_layer_counts(config) -> dict[str, int]:
    """Layers per hook point of a Qwen-VL config (no weights needed)."""
    return {"lm.self": int(config.text_config.num_hidden_layers)}


def vision_tower(model) -> torch.nn.Module:
    """The vision encoder with its patch merger (the gradient methods run it without autograd)."""
    return model.model.visual


def cascade(model) -> list[torch.nn.Module]:
    """The re-initialisation order for the sanity check, top layer first: the head, the language model's
    layers, then the patch merger (the ViT blocks below it stay, as other families' vision towers do)."""
    return [model.lm_head, *reversed(model.model.language_model.layers), model.model.visual.merger]


def pixel_preprocessor(lm) -> QwenPixels:
    """Images -> (N, n, C * t * p * p) patches at the config's square side (``pixels.QwenPixels``)."""
    return QwenPixels(lm.processor.image_processor, image_side(lm.model.config))


__all__ = [
    "cascade",
    "grid_side",
    "hook_layer_counts",
    "image_slots",
    "load",
    "passes_for",
    "pixel_preprocessor",
    "vision_tower",
    "weightless",
]
