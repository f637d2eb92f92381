"""The Qwen2-VL / Qwen2.5-VL family's interface (``stcg_model.families.registry``): what the family-blind platform
calls. Each image runs at its own resolution with its own ``rows x cols`` grid of merged blocks
(``pixels.QwenPixels.grid_shape``), unless the config fixes one square side (``stcg_image_side``)."""

from __future__ import annotations

import torch

from stcg_model.families.qwen_vl.loading import load, weightless
from stcg_model.families.qwen_vl.passes import passes_for
from stcg_model.families.qwen_vl.pixels import QwenPixels, fixed_side, unit


def grid_side(config) -> int | None:
    """The region grid side ``G`` of a fixed square side (merged 2 x 2 patch blocks per side); None: each
    image has its own grid."""
    side = fixed_side(config)
    return None if side is None else side // unit(config)


def image_slots(config) -> int | None:
    """``Q = G * G`` at a fixed side: one ``<|image_pad|>`` slot per merged block; None: it varies per image."""
    g = grid_side(config)
    return None if g is None else g * g


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
    """Images -> (N, n_max, C * t * p * p) patches, each image's grid by ``grid_shape`` (``pixels.QwenPixels``)."""
    cfg = lm.model.config
    return QwenPixels(lm.processor.image_processor, fixed_side(cfg), unit(cfg))


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
