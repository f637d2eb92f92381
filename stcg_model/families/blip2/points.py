"""Where BLIP-2's attention weights are read: the named hook points of the STCG's capture and the
attention modules a traced forward keeps (``stcg_model.families.capture`` is the mechanism).

Capture points (head-mean, layer-aggregated by ``AttentionCapture``)::

    qformer.cross      model.qformer.encoder.layer[i].crossattention.attention   (B, H, Q, 1+P)
    lm.encoder.self    language_model.encoder.block[i].layer[0].SelfAttention    (B, H, L, L)   T5
    lm.decoder.cross   language_model.decoder.block[i].layer[1].EncDecAttention  (B, H, T, L)   T5
    lm.self            language_model.model.decoder.layers[i].self_attn          (B, H, N, N)   OPT
                       (language_model.model.layers[i].self_attn: InstructBLIP's Vicuna)
    The qformer.* points of InstructBLIP read [queries | instruction]: qformer.self (B, H, Q+n, Q+n).

Trace points (every layer, heads kept, for the gradient methods) add ``qformer.self`` and, for T5,
``lm.decoder.self``; ``qformer.cross`` keeps one entry per Q-Former layer (None where a layer has no
cross-attention), so the relevancy chain can walk the layers in order.
"""

from __future__ import annotations

from stcg_model.families.capture import HookPoint


def causal_layers(lm) -> list:
    """The decoder layers of a causal language model: OPT's ``model.decoder.layers`` (BLIP-2) or
    Llama's ``model.layers`` (InstructBLIP's Vicuna)."""
    inner = lm.model
    return list(inner.decoder.layers if hasattr(inner, "decoder") else inner.layers)


def blip2_hook_points(model) -> dict[str, HookPoint]:
    """The hook points of a ``Blip2ForConditionalGeneration`` (T5 or OPT language model)."""
    cross = tuple(
        layer.crossattention.attention
        for layer in model.qformer.encoder.layer
        if getattr(layer, "has_cross_attention", False)
    )
    points = {"qformer.cross": HookPoint("qformer.cross", cross, 1)}
    lm = model.language_model
    if model.config.text_config.is_encoder_decoder:
        points["lm.encoder.self"] = HookPoint(
            "lm.encoder.self", tuple(b.layer[0].SelfAttention for b in lm.encoder.block), 2
        )
        points["lm.decoder.cross"] = HookPoint(
            "lm.decoder.cross", tuple(b.layer[1].EncDecAttention for b in lm.decoder.block), 2
        )
    else:
        points["lm.self"] = HookPoint("lm.self", tuple(layer.self_attn for layer in causal_layers(lm)), 1)
    return points


def hook_layer_counts(config) -> dict[str, int]:
    """Layers per hook point of a BLIP-2 config (``Blip2Config``; no weights needed), as
    ``blip2_hook_points`` finds them in the built model: Q-Former layer ``i`` cross-attends when
    ``i % cross_attention_frequency == 0``."""
    qf, tc = config.qformer_config, config.text_config
    freq = max(1, int(getattr(qf, "cross_attention_frequency", 1) or 1))
    counts = {"qformer.cross": sum(1 for i in range(int(qf.num_hidden_layers)) if i % freq == 0)}
    if tc.is_encoder_decoder:
        counts["lm.encoder.self"] = int(tc.num_layers)
        counts["lm.decoder.cross"] = int(getattr(tc, "num_decoder_layers", None) or tc.num_layers)
    else:
        counts["lm.self"] = int(tc.num_hidden_layers)
    return counts


def blip2_trace_points(model) -> dict[str, HookPoint]:
    """Every attention module on the path from the image to the answer, in layer order (``Traced``'s
    fields): ``qformer.self``, ``qformer.cross`` (None entries), then ``lm.encoder.self``,
    ``lm.decoder.self``, ``lm.decoder.cross`` (T5) or ``lm.self`` (OPT)."""
    qf = model.qformer.encoder.layer
    points = {
        "qformer.self": HookPoint("qformer.self", tuple(layer.attention.attention for layer in qf), 1),
        "qformer.cross": HookPoint(
            "qformer.cross",
            tuple(
                layer.crossattention.attention if getattr(layer, "has_cross_attention", False) else None for layer in qf
            ),
            1,
        ),
    }
    lm = model.language_model
    if model.config.text_config.is_encoder_decoder:
        for name, modules in (
            ("lm.encoder.self", [b.layer[0].SelfAttention for b in lm.encoder.block]),
            ("lm.decoder.self", [b.layer[0].SelfAttention for b in lm.decoder.block]),
            ("lm.decoder.cross", [b.layer[1].EncDecAttention for b in lm.decoder.block]),
        ):
            points[name] = HookPoint(name, tuple(modules), 2)
    else:
        points["lm.self"] = HookPoint("lm.self", tuple(layer.self_attn for layer in causal_layers(lm)), 1)
    return points
