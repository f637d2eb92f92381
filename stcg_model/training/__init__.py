"""The shipped tiny models, trained on the CPU: ``easy_vqa`` (the demo model), ``scenes`` with
``scenes_config``, ``scenes_targets`` and ``scenes_checks`` (the scenes model and its causal edit check),
``tokenizer`` (the word-level tokenizer and processor both use)."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DemoConfig": "stcg_model.training.easy_vqa",
    "train_demo": "stcg_model.training.easy_vqa",
    "train_scenes": "stcg_model.training.scenes",
    "ScenesConfig": "stcg_model.training.scenes_config",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
