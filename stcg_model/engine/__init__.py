"""The STCG engine: batched passes over an example's image variants, assembled into one ``STCGraph``.

``core`` (``STCGEngine``), ``engine_config`` (``EngineConfig``: every option, checked before model work),
``assembly`` (arrays -> graph), ``curves`` (deletion/insertion curves), ``evaluation`` (accuracy of a
loaded model on questions).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "STCGEngine": "stcg_model.engine.core",
    "EngineConfig": "stcg_model.engine.engine_config",
    "accuracy_table": "stcg_model.engine.evaluation",
    "evaluate": "stcg_model.engine.evaluation",
}
"""Public name -> the module that defines it, imported on first use (``import stcg_model.X`` stays light)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
