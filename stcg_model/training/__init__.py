"""The shipped tiny models, trained on the CPU: ``easy_vqa`` (the demo model), ``scenes`` with
``scenes_config``, ``scenes_targets`` and ``scenes_checks`` (the scenes model and its causal edit check),
``tokenizer`` (the word-level tokenizer and processor both use)."""

from __future__ import annotations

from stcg.lazy import lazy_exports

_EXPORTS = {
    "DemoConfig": "stcg_model.training.easy_vqa",
    "train_demo": "stcg_model.training.easy_vqa",
    "train_scenes": "stcg_model.training.scenes",
    "ScenesConfig": "stcg_model.training.scenes_config",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
