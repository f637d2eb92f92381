"""Model families: what differs between vision-language architectures, behind one interface.

``capture`` (the one hook mechanism: an attention implementation that returns weights only where asked,
named hook points, the layer selection), ``inputs`` (prepared examples and token ids every family
shares), ``passes`` (the interface), ``decoder_only`` (the passes of every decoder-only language model
with image slots), ``traced`` and ``teacher_forcing``, and one folder per family: ``blip2/`` (loading,
configs, hook points, the batched passes and the traced forward for T5 and OPT language models, pixel
preprocessing) and ``llava/`` (docs/families.md).
"""

from __future__ import annotations

from stcg.lazy import lazy_exports

_EXPORTS = {
    "LoadedModel": "stcg_model.families.loading",
    "load_model": "stcg_model.families.loading",
    "checkpoint_config": "stcg_model.families.loading",
    "ModelFamily": "stcg_model.families.registry",
    "family_of": "stcg_model.families.registry",
    "family_for": "stcg_model.families.registry",
    "register_family": "stcg_model.families.registry",
    "ModelPasses": "stcg_model.families.passes",
    "PassResult": "stcg_model.families.passes",
    "passes_for": "stcg_model.families.blip2.passes",
    "Traced": "stcg_model.families.traced",
    "AttentionCapture": "stcg_model.families.capture",
    "HookPoint": "stcg_model.families.capture",
    "LayerSelection": "stcg_model.families.capture",
    "InputPreparer": "stcg_model.families.inputs",
    "PreparedExample": "stcg_model.families.inputs",
    "TokenIds": "stcg_model.families.inputs",
    "VQAInput": "stcg_model.families.inputs",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
