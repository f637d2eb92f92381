"""The STCG engine: batched passes over an example's image variants, assembled into one ``STCGraph``.

``core`` (``STCGEngine``), ``engine_config`` (``EngineConfig``: every option, checked before model work),
``assembly`` (arrays -> graph), ``curves`` (deletion/insertion curves), ``evaluation`` (accuracy of a
loaded model on questions).
"""

from __future__ import annotations

from stcg.lazy import lazy_exports

_EXPORTS = {
    "STCGEngine": "stcg_model.engine.core",
    "EngineConfig": "stcg_model.engine.engine_config",
    "accuracy_table": "stcg_model.engine.evaluation",
    "evaluate": "stcg_model.engine.evaluation",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
