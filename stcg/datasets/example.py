"""One VQA example, whatever its dataset: ``VQAExample``, and ``check_text`` (text a sink can store)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

MAX_TEXT_CHARS = 10_000
"""The longest text a dataset field may hold (question, each answer, question and answer type, ids, image
path), in characters. A longer one, one that is not valid Unicode (a lone surrogate such as a JSON
``"\\udfff"`` escape) or not text at all makes its example a failed example (``check_text``), recorded with
the reason; the run goes on. docs/ingest.md, "Text from datasets"."""


@dataclass(frozen=True)
class VQAExample:
    example_id: str  # stable across runs: "<dataset>:<split>:<question id>"
    image_path: str
    question: str
    answers: tuple[str, ...]  # ground truth: 1 for easy-VQA, the 10 human answers for VQA-v2
    question_type: str
    answer_type: str
    image_id: str
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def invalid(self) -> str | None:
        """Why the example's text cannot be stored (``check_text``), or None."""
        return self.extra.get("invalid")

    @property
    def answer(self) -> str:
        """The single reference answer (VQA-v2: ``multiple_choice_answer``)."""
        return self.extra.get("multiple_choice_answer") or self.answers[0]

    def load_image(self):
        """The example's image as RGB (``StcgError`` with one line if it cannot be read)."""
        loader = self.extra.get("image_loader")
        if loader is not None:
            return loader()
        from stcg.images import open_image

        return open_image(self.image_path)

    @property
    def has_mask(self) -> bool:
        """Whether the example carries a ground-truth mask of its evidence (docs/spec.md section 7)."""
        return self.extra.get("mask_loader") is not None

    def load_mask(self):
        """(H, W) bool mask of the answer's evidence on the example's image, or None (no mask).

        Datasets with masks put a ``mask_loader`` (no arguments -> the mask) and a ``mask_kind``
        (``single``, ``union`` or ``all``) in ``extra``; a mask that cannot be read is a one-line
        ``StcgError``."""
        loader = self.extra.get("mask_loader")
        return None if loader is None else loader()

    def meta(self) -> dict:
        return {
            "question_type": self.question_type,
            "answer_type": self.answer_type,
            "image_id": self.image_id,
            "image_path": self.image_path,
            "answers": list(self.answers),
            "gt_answer": self.answer,
            **({"mask_kind": self.extra["mask_kind"]} if self.has_mask else {}),
        }


def _text_problem(value) -> str | None:
    """What keeps ``value`` from being stored as text, or None."""
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if len(value) > MAX_TEXT_CHARS:
        return f"has {len(value):,} characters (at most {MAX_TEXT_CHARS:,})"
    for i, c in enumerate(value):
        if "\ud800" <= c <= "\udfff":
            return f"is not valid Unicode (lone surrogate U+{ord(c):04X} at character {i})"
    return None


def _storable(value, is_id: bool = False) -> str:
    """``value`` as text that any sink stores: surrogates escaped (``\\udfff``), cut to the maximum (an id
    keeps a hash of the whole, so two long ids stay distinct)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_TEXT_CHARS:
        if is_id:
            return f"{text[:200]}...#{hashlib.sha1(text.encode()).hexdigest()[:16]}"
        return text[:MAX_TEXT_CHARS]
    return text


def check_text(ex: VQAExample) -> VQAExample:
    """``ex`` if every text field of it can be stored; else a copy whose fields are made storable
    (``_storable``) and whose ``invalid`` says what was wrong, which ingestion records as the example's
    failure. The one place where text read from any dataset is checked (``open_dataset``)."""
    fields = {
        "example id": ex.example_id,
        "image id": ex.image_id,
        "image path": ex.image_path,
        "question": ex.question,
        "question type": ex.question_type,
        "answer type": ex.answer_type,
        "reference answer": ex.extra.get("multiple_choice_answer", ""),
    }
    fields.update({f"answer {i + 1}": a for i, a in enumerate(ex.answers)})
    problems = [f"{name} {why}" for name, value in fields.items() if (why := _text_problem(value)) is not None]
    if ex.invalid:
        problems.insert(0, ex.invalid)
    if not problems:
        return ex
    extra = {k: v for k, v in ex.extra.items() if k != "multiple_choice_answer"}
    if ex.extra.get("multiple_choice_answer") is not None:
        extra["multiple_choice_answer"] = _storable(ex.extra["multiple_choice_answer"])
    extra["invalid"] = "; ".join(problems)
    return replace(
        ex,
        example_id=_storable(ex.example_id, is_id=True),
        image_id=_storable(ex.image_id, is_id=True),
        image_path=_storable(ex.image_path),
        question=_storable(ex.question),
        answers=tuple(_storable(a) for a in ex.answers),
        question_type=_storable(ex.question_type),
        answer_type=_storable(ex.answer_type),
        extra=extra,
    )
