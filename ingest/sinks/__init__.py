"""Sinks: where ingestion writes a run (``registry``: the ``Sink`` protocol and ``--sink``), one module per
built-in, registered in ``BUILTINS`` order: ``neo4j`` (Bolt, the default), ``csv`` (neo4j-admin import
files). A new sink is one more module that calls ``register_sink`` and its name in ``BUILTINS``.
"""

import importlib

from ingest.sinks.registry import (
    Sink,
    SinkKind,
    register_sink,
    resolve_sink,
    sink_forms,
    sink_help,
    sink_kinds,
    unregister_sink,
)

BUILTINS = ("neo4j", "csv_files")
"""The modules of the built-in sinks, in registration order (the order of help and messages)."""

for _module in BUILTINS:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "Sink",
    "SinkKind",
    "register_sink",
    "resolve_sink",
    "sink_forms",
    "sink_help",
    "sink_kinds",
    "unregister_sink",
]
