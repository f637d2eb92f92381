"""Statistics of runs (docs/spec.md sections 5-7): metrics with BCa intervals over many ``STCGraph``s and
the claims they support or refute. numpy and scipy only: no torch, no model."""

from __future__ import annotations

from stcg.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
