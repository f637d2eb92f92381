"""VQA datasets as one stream of ``VQAExample`` records, chosen by name from a registry.

``example`` (the record, ``check_text``), ``registry`` (``DatasetSource``, ``register_dataset``; the
``--dataset`` help and errors come from it), ``selection`` (``open_dataset``: filter, sample, shard,
masks), and one module per built-in dataset, registered in ``BUILTINS`` order. A new dataset is one
more module that calls ``register_dataset`` and its name in ``BUILTINS``.
"""

import importlib

from stcg.datasets.example import MAX_TEXT_CHARS, VQAExample, check_text
from stcg.datasets.registry import (
    DatasetSource,
    dataset_forms,
    dataset_help,
    dataset_sources,
    register_dataset,
    split_help,
    unregister_dataset,
)
from stcg.datasets.selection import open_dataset, parse_shard, select

BUILTINS = ("easy_vqa", "scenes_testbed", "vqa_v2", "hf")
"""The modules of the built-in datasets, in registration order (the order of help and messages)."""

for _module in BUILTINS:
    importlib.import_module(f"{__name__}.{_module}")

from stcg.datasets.easy_vqa import easy_vqa_question_type, easy_vqa_vocabulary, load_easy_vqa  # noqa: E402
from stcg.datasets.hf import HF_MASK_COLUMNS, HF_MASK_KINDS, load_hf_vqa  # noqa: E402
from stcg.datasets.scenes_testbed import load_scenes  # noqa: E402
from stcg.datasets.vqa_v2 import load_vqa_v2  # noqa: E402

__all__ = [
    "HF_MASK_COLUMNS",
    "HF_MASK_KINDS",
    "MAX_TEXT_CHARS",
    "DatasetSource",
    "VQAExample",
    "check_text",
    "dataset_forms",
    "dataset_help",
    "dataset_sources",
    "easy_vqa_question_type",
    "easy_vqa_vocabulary",
    "load_easy_vqa",
    "load_hf_vqa",
    "load_scenes",
    "load_vqa_v2",
    "open_dataset",
    "parse_shard",
    "register_dataset",
    "select",
    "split_help",
    "unregister_dataset",
]
