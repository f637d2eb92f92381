"""Which examples of a dataset a run takes: ``open_dataset`` (a registered dataset, filtered, sampled, sharded,
with masks attached and text checked)."""

from __future__ import annotations

from collections.abc import Callable

from stcg.datasets.example import VQAExample, check_text
from stcg.datasets.registry import resolve
from stcg.errors import StcgError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (0 <= i < N) -> (i, N)."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise StcgError(f"invalid --shard {text!r}: use i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise StcgError(f"invalid --shard {text!r}: need 0 <= i < N")
    return i, n


def select(
    examples: list[VQAExample],
    limit: int | None = None,
    question_type: str | None = None,
    answer_type: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[VQAExample]:
    """Filter (question type by prefix, answer type exactly), then a seeded random sample or the first ``limit``,
    then shard i of N. ``log`` is told when ``sample`` or ``limit`` asks for more questions than there are."""
    if question_type:
        examples = [
            e for e in examples if isinstance(e.question_type, str) and e.question_type.startswith(question_type)
        ]
    if answer_type:
        examples = [e for e in examples if e.answer_type == answer_type]
    for option, asked in (("--sample", sample), ("--limit", limit)):
        if asked is not None and asked > len(examples) and log is not None:
            log(f"{option} {asked} is more than the {len(examples)} questions selected; all {len(examples)} are used")
            break
    if sample is not None:
        import numpy as np

        idx = np.sort(np.random.default_rng(seed).permutation(len(examples))[:sample])
        examples = [examples[i] for i in idx]
    if limit is not None:
        examples = examples[:limit]
    if shard is not None:
        i, n = shard
        examples = examples[i::n]
    return examples


def open_dataset(
    spec: str,
    split: str | None = None,
    limit: int | None = None,
    question_type: str | None = None,
    answer_type: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    shard: str | tuple[int, int] | None = None,
    log: Callable[[str], None] | None = None,
    masks: str | None = None,
) -> list[VQAExample]:
    """Examples of ``spec``, a registered dataset (``stcg.datasets.registry``: ``easy-vqa``, ``scenes[:N]``,
    ``vqa-v2:<folder>``, ``hf:<save_to_disk folder or dataset name>``, and any a plugin registers),
    selected (``select``) and with their text checked (``check_text``: an example whose text cannot be stored
    comes back marked ``invalid``, for ingestion to record as failed).

    ``masks`` (``coco:<instances JSON>``) gives examples ground-truth masks from annotations
    (``stcg.masks``); scenes and ``hf:`` datasets with a mask column carry their own."""
    if limit is not None and limit < 0:
        raise StcgError("--limit must be >= 0")
    shard_t = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    source, arg = resolve(spec)
    examples = source.load(arg, split)
    chosen = select(examples, limit, question_type, answer_type, sample, seed, shard_t, log)
    if masks is not None:
        from stcg.masks import attach_masks

        chosen = attach_masks(chosen, masks, log=log)
    return [check_text(e) for e in chosen]
