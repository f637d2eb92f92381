"""Statistics of runs (docs/spec.md sections 5-7): metrics with BCa intervals over many ``STCGraph``s and
the claims they support or refute. numpy and scipy only: no torch, no model."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "evaluate_claims": "stcg_model.statistics.claims",
    "evaluate_method_claims": "stcg_model.statistics.claims",
    "Estimate": "stcg_model.statistics.metrics",
    "bootstrap": "stcg_model.statistics.metrics",
    "summarise": "stcg_model.statistics.metrics",
    "summarise_methods": "stcg_model.statistics.metrics",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
