"""Where ingestion writes a run: a ``Sink``, chosen by name from ``--sink`` through a registry.

A sink takes a run from claim to finish. The pipeline (and the Ray driver) talk to it only through
``Sink``'s methods, so a new sink is one file that implements them and calls ``register_sink``, plus its
module name in ``ingest.sinks.BUILTINS``. ``--sink`` help and its error message come from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from stcg.errors import StcgError


class Sink(Protocol):
    """What the pipeline asks of a sink, in the order it asks: ``prepare()`` (schema, folders),
    ``check_run`` (refuse a run whose recorded identity differs), ``claim_run`` (the ONE atomic claim;
    -> the store root the run records; takes the command's ``ingest.lease.Lease``), ``completed`` (->
    example ids already complete), ``set_params``, ``heartbeat`` of the lease while it works,
    ``write(GraphRows)`` per batch (nodes and links, then the completion markers), ``finish`` (ends the
    lease; -> ``{complete, failed, status, total, finalised}``), ``release`` of a lease on an error; and
    the counters ``nodes_written``, ``rels_written``, ``retries``."""

    nodes_written: int
    rels_written: int
    retries: int

    def prepare(self) -> None: ...

    def check_run(self, run_id: str, identity: str) -> None: ...

    def claim_run(self, run_id: str, identity: str, store_root: str, props: dict, lease=None) -> str: ...

    def completed(self, run_id: str) -> set[str]: ...

    def set_params(self, run_id: str, params: str) -> None: ...

    def heartbeat(self, run_id: str, lease_uid: str) -> None: ...

    def write(self, rows) -> None: ...

    def finish(self, run_id: str, finished: bool, lease_uid: str | None = None) -> dict: ...

    def release(self, run_id: str, lease_uid: str) -> None: ...


@dataclass(frozen=True)
class SinkKind:
    """One kind of sink: ``name`` (before ``:`` in ``--sink``), ``form`` (how a user writes it), ``help``,
    ``open(arg, settings, log)`` -> a context manager yielding the ``Sink`` (``arg`` the text after ``:``,
    ``settings`` the Neo4j settings or None), ``takes_arg`` (``:arg`` required) and ``database`` (it
    writes into the Neo4j database of ``settings``: the only kind the Ray driver's writers can use)."""

    name: str
    form: str
    help: str
    open: Callable[..., AbstractContextManager[Sink]]
    takes_arg: bool = False
    database: bool = False


_SINKS: dict[str, SinkKind] = {}


def register_sink(kind: SinkKind) -> SinkKind:
    """Make ``kind`` available as ``--sink <kind.form>``; a name is registered once."""
    if not kind.name or ":" in kind.name:
        raise ValueError(f"sink name {kind.name!r}: no ':'")
    if kind.name in _SINKS:
        raise ValueError(f"sink {kind.name!r} is already registered")
    _SINKS[kind.name] = kind
    return kind


def unregister_sink(name: str) -> None:
    """Remove ``name`` (for tests that register a throw-away sink)."""
    _SINKS.pop(name, None)


def sink_kinds() -> list[SinkKind]:
    """Every registered sink kind, in registration order."""
    return list(_SINKS.values())


def sink_forms() -> str:
    """``neo4j or csv:<folder>``: the forms, for messages."""
    forms = [k.form for k in _SINKS.values()]
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


def sink_help() -> str:
    """``--sink`` help: each form with its phrase."""
    return "Where the run goes: " + " | ".join(f"{k.form} ({k.help})" for k in _SINKS.values()) + "."


def resolve_sink(spec: str) -> tuple[SinkKind, str]:
    """``"csv:/out"`` -> (its kind, ``"/out"``); one-line ``StcgError`` naming the forms otherwise."""
    name, sep, arg = (spec or "").partition(":")
    kind = _SINKS.get(name)
    if kind is None or (kind.takes_arg and not arg) or (not kind.takes_arg and sep):
        raise StcgError(f"invalid --sink {spec!r}: use {sink_forms()}")
    return kind, arg
