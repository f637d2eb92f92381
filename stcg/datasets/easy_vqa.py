"""easy-VQA (``--dataset easy-vqa``), from the installed ``easy_vqa`` package (images + questions, MIT licence)."""

from __future__ import annotations

from pathlib import Path

from stcg.datasets.example import VQAExample
from stcg.datasets.registry import DatasetSource, register_dataset
from stcg.errors import StcgError


def easy_vqa_question_type(question: str) -> tuple[str, str]:
    """(question_type, answer_type) of an easy-VQA question, in the style of VQA-v2's types.

    what color / what shape (answer_type other); is there / is a / is no / does the image contain /
    does the image not contain (answer_type yes/no).
    """
    q = question.lower().strip()
    if q.startswith("what color"):
        return "what color", "other"
    if q.startswith("what"):
        return "what shape", "other"
    for prefix in ("does the image not contain", "does the image contain", "is there", "is a", "is no"):
        if q.startswith(prefix):
            return prefix, "yes/no"
    return "other", "other"


def load_easy_vqa(split: str = "test") -> list[VQAExample]:
    """All easy-VQA questions of ``split`` (train: 38,575, test: 9,673), in the package's order."""
    try:
        import easy_vqa
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise StcgError("easy-VQA is not installed: pip install easy-vqa") from None
    if split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        questions, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise StcgError(f"easy-VQA has splits train and test, not {split!r}")
    out = []
    for i, (q, a, img) in enumerate(zip(questions, answers, image_ids)):
        qt, at = easy_vqa_question_type(q)
        out.append(VQAExample(f"easy-vqa:{split}:{i}", str(Path(paths[img])), q, (a,), qt, at, str(img)))
    return out


def easy_vqa_vocabulary() -> list[str]:
    """Every question and answer text of easy-VQA (train and test), for building the tokenizer."""
    import easy_vqa

    texts = []
    for getter in (easy_vqa.get_train_questions, easy_vqa.get_test_questions):
        q, a, _ = getter()
        texts.extend(q)
        texts.extend(a)
    texts.extend(easy_vqa.get_answers())
    return texts


register_dataset(
    DatasetSource(
        "easy-vqa",
        "easy-vqa",
        "shapes and colours, the demo model's data",
        lambda arg, split: load_easy_vqa(split or "test"),
        takes_arg=False,
        default_split="test",
    )
)
