"""The BLIP-2 family's interface (``stcg_model.families.registry``): what the family-blind platform calls."""

from __future__ import annotations

import torch

from stcg_model.families.blip2.loading import load, weightless
from stcg_model.families.blip2.passes import passes_for
from stcg_model.families.blip2.points import causal_layers, hook_layer_counts


def grid_side(config) -> int:
    """The region grid side ``G`` (``P = G * G`` ViT patches) of a BLIP-2 config."""
    vc = config.vision_config
    return int(vc.image_size // vc.patch_size)


def image_slots(config) -> int:
    """``Q``: the language model's image slots (the Q-Former's query tokens)."""
    return int(config.num_query_tokens)


def vision_tower(model) -> torch.nn.Module:
    """The vision encoder (the gradient methods run it without autograd: ``chains.vision_as_leaf``)."""
    return model.vision_model


def cascade(model) -> list[torch.nn.Module]:
    """The re-initialisation order of a ``Blip2ForConditionalGeneration`` for the sanity check, top layer
    first: the language model's head and layers (T5: decoder then encoder blocks; OPT: decoder layers),
    the language projection, then the Q-Former's layers (InstructBLIP's model has the same layout)."""
    lm = model.language_model
    order: list[torch.nn.Module] = []
    if model.config.text_config.is_encoder_decoder:
        order.append(lm.lm_head)
        order += list(reversed(lm.decoder.block)) + list(reversed(lm.encoder.block))
    else:
        order.append(lm.lm_head)
        order += list(reversed(causal_layers(lm)))
    order.append(model.language_projection)
    order += list(reversed(model.qformer.encoder.layer))
    return order


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
