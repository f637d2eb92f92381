"""Datasets by name: each built-in (and a user's) registers a ``DatasetSource``; ``--dataset`` help, its
error message and ``open_dataset`` read the registry, so a new dataset is one file and one registry line
(``stcg.datasets.BUILTINS``, or ``register_dataset`` from a plugin module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stcg.errors import StcgError

if TYPE_CHECKING:
    from stcg.datasets.example import VQAExample


@dataclass(frozen=True)
class DatasetSource:
    """One kind of dataset: ``name`` (the part of ``--dataset`` before ``:``), ``form`` (how a user writes
    it, e.g. ``vqa-v2:<folder>``), ``help`` (one phrase), ``load(arg, split)`` -> examples (``arg`` the
    text after ``:``, ``split`` None for the default), ``takes_arg`` (True: ``:arg`` required, False:
    none allowed, None: optional) and ``default_split`` (shown in ``--split`` help)."""

    name: str
    form: str
    help: str
    load: Callable[[str, str | None], list[VQAExample]]
    takes_arg: bool | None = None
    default_split: str = "test"


_DATASETS: dict[str, DatasetSource] = {}


def register_dataset(source: DatasetSource) -> DatasetSource:
    """Make ``source`` available as ``--dataset <source.form>``; a name is registered once."""
    if not source.name or ":" in source.name or source.name != source.name.strip():
        raise ValueError(f"dataset name {source.name!r}: no ':' and no surrounding spaces")
    if source.name in _DATASETS:
        raise ValueError(f"dataset {source.name!r} is already registered")
    _DATASETS[source.name] = source
    return source


def unregister_dataset(name: str) -> None:
    """Remove ``name`` (for tests that register a throw-away dataset)."""
    _DATASETS.pop(name, None)


def dataset_sources() -> list[DatasetSource]:
    """Every registered dataset, in registration order."""
    return list(_DATASETS.values())


def dataset_forms() -> str:
    """``easy-vqa, scenes[:N], vqa-v2:<folder> or hf:<folder or name>``: the forms, for messages."""
    forms = [s.form for s in _DATASETS.values()]
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


def dataset_help() -> str:
    """``--dataset`` help: each form with its phrase."""
    return " | ".join(f"{s.form} ({s.help})" for s in _DATASETS.values()) + "."


def split_help() -> str:
    """``--split`` help: each dataset's default split."""
    return "Split [" + "; ".join(f"{s.name}: {s.default_split}" for s in _DATASETS.values()) + "]."


def resolve(spec: str) -> tuple[DatasetSource, str]:
    """``"vqa-v2:/data"`` -> (its source, ``"/data"``); one-line ``StcgError`` naming the forms otherwise."""
    name, _, arg = spec.partition(":")
    source = _DATASETS.get(name)
    if source is None or (source.takes_arg is True and not arg) or (source.takes_arg is False and arg):
        raise StcgError(f"unknown dataset {spec!r}: use {dataset_forms()}")
    return source, arg
