"""The BLIP-2 family's interface (``stcg_model.families.registry``): what the family-blind platform calls."""

from __future__ import annotations

import torch

from stcg_model.families.blip2.loading import load, weightless
from stcg_model.families.blip2.passes import passes_for
from stcg_model.families.blip2.points import hook_layer_counts


def cascade(model) -> list[torch.nn.Module]:
    """The re-initialisation order of a ``Blip2ForConditionalGeneration`` for the sanity check, top layer
    first: the language model's head and layers (T5: decoder then encoder blocks; OPT: decoder layers),
    the language projection, then the Q-Former's layers."""
    lm = model.language_model
    order: list[torch.nn.Module] = []
    if model.config.text_config.is_encoder_decoder:
        order.append(lm.lm_head)
        order += list(reversed(lm.decoder.block)) + list(reversed(lm.encoder.block))
    else:
        order.append(lm.lm_head)
        order += list(reversed(lm.model.decoder.layers))
    order.append(model.language_projection)
    order += list(reversed(model.qformer.encoder.layer))
    return order


__all__ = ["cascade", "hook_layer_counts", "load", "passes_for", "weightless"]
