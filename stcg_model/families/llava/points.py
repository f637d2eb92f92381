"""Where LLaVA's attention weights are read (``decoder_only.language_model_points``; ``stcg_model.families.capture``
is the mechanism).

One point, for the STCG's capture and the gradient methods' traced forward alike::

    lm.self    model.language_model.layers[i].self_attn    (B, H, N, N)   causal self-attention

The vision tower's attention is never read: its patches are the regions and the projector maps each
patch to its own slot, so no attention sits between a region and its slot.
"""

from __future__ import annotations


def hook_layer_counts(config) -> dict[str, int]:
    """Layers per hook point of a LLaVA config (no weights needed)."""
    return {"lm.self": int(config.text_config.num_hidden_layers)}
