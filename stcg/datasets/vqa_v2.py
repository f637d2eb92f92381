"""VQA-v2 in its official layout (``--dataset vqa-v2:<folder>``): the questions and annotations JSON and the
COCO image folder."""

from __future__ import annotations

import json
from pathlib import Path

from stcg.datasets.example import VQAExample
from stcg.datasets.registry import DatasetSource, register_dataset
from stcg.errors import StcgError


def _find_image_dir(root: Path, split: str) -> Path:
    for cand in (root / split, root / "images" / split, root / "images", root):
        if cand.is_dir() and any(cand.glob(f"COCO_{split}_*.jpg")):
            return cand
    return root / split


def load_vqa_v2(root: str | Path, split: str = "val2014") -> list[VQAExample]:
    """VQA-v2 from its official JSON files and the COCO image folder.

    ``root`` holds ``v2_OpenEnded_mscoco_<split>_questions.json``, ``v2_mscoco_<split>_annotations.json``
    (absent for test splits) and the images ``COCO_<split>_<12-digit image id>.jpg`` in ``root/<split>/``
    (or ``root/images/<split>/``, ``root/images/``, ``root/``).
    """

    root = Path(root)
    if not root.is_dir():
        raise StcgError(f"VQA-v2 folder not found: {root}")
    qfile = root / f"v2_OpenEnded_mscoco_{split}_questions.json"
    afile = root / f"v2_mscoco_{split}_annotations.json"
    if not qfile.is_file():
        found = sorted(p.name for p in root.glob("v2_OpenEnded_mscoco_*_questions.json"))
        raise StcgError(f"no {qfile.name} in {root}" + (f" (found: {', '.join(found)})" if found else ""))
    try:
        questions = json.loads(qfile.read_text())["questions"]
        annotations = (
            {a["question_id"]: a for a in json.loads(afile.read_text())["annotations"]} if afile.is_file() else {}
        )
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise StcgError(f"malformed VQA-v2 JSON in {root}: {type(e).__name__}: {e}") from None
    if not isinstance(questions, list) or not isinstance(annotations, dict):
        raise StcgError(f"malformed VQA-v2 JSON in {root}: 'questions' is not a list")
    image_dir = _find_image_dir(root, split)
    out = []
    for i, q in enumerate(questions):
        if not isinstance(q, dict) or q.get("question_id") is None:
            raise StcgError(f"malformed VQA-v2 JSON in {qfile}: question #{i} has no question_id")
        ann = annotations.get(q["question_id"], {})
        ann = ann if isinstance(ann, dict) else {}
        raw = ann.get("answers", [])
        answers = tuple(a.get("answer") if isinstance(a, dict) else a for a in (raw if isinstance(raw, list) else []))
        mc = ann.get("multiple_choice_answer")
        extra = {"multiple_choice_answer": mc} if mc else {}
        try:
            image = str(image_dir / f"COCO_{split}_{int(q.get('image_id')):012d}.jpg")
        except (TypeError, ValueError):
            image, extra["invalid"] = "", f"image_id {q.get('image_id')!r} is not a number"
        out.append(
            VQAExample(
                f"vqa-v2:{split}:{q['question_id']}",
                image,
                q.get("question"),
                answers or ((mc,) if mc else ("",)),
                ann.get("question_type", "unknown"),
                ann.get("answer_type", "unknown"),
                str(q.get("image_id")),
                extra,
            )
        )
    return out


register_dataset(
    DatasetSource(
        "vqa-v2",
        "vqa-v2:<folder>",
        "VQA-v2: a folder with the official JSON + COCO images",
        lambda arg, split: load_vqa_v2(arg, split or "val2014"),
        takes_arg=True,
        default_split="val2014",
    )
)
