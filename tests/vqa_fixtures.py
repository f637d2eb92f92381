"""Small datasets in the exact VQA-v2 formats (official JSON + COCO file names, and a HF datasets copy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40), "yellow": (230, 220, 30)}


def _shape_image(colour: str, size=(64, 48), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = np.full((size[1], size[0], 3), 245, np.uint8)
    x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    img[y0 : y0 + size[1] // 2, x0 : x0 + size[0] // 2] = COLOURS[colour]
    return Image.fromarray(img)


def _annotation(qid, image_id, question, answer, qtype, atype):
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": qtype,
        "answer_type": atype,
        "multiple_choice_answer": answer,
        "answers": [
            {"answer": answer if k < 8 else "other", "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)
        ],
    }


def make_vqa_v2_folder(
    root: Path,
    n_images: int = 4,
    questions_per_image: int = 2,
    split: str = "val2014",
    bad_images: bool = False,
    questions: list[str] | None = None,
) -> Path:
    """``root`` with v2_OpenEnded_mscoco_<split>_questions.json, v2_mscoco_<split>_annotations.json, <split>/COCO_*.jpg.

    ``bad_images`` makes the hostile set: a missing file, a truncated JPEG, a text file named .jpg,
    1x1, 6000x6000, greyscale, CMYK, RGBA and a normal image; ``questions`` are then extra
    questions asked about the normal image.
    """
    root = Path(root)
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    qs, anns = [], []
    names = list(COLOURS)
    templates = [
        ("what color is the shape?", "what color is the", "other"),
        ("is there a shape?", "is there a", "yes/no"),
        ("what is in the picture?", "what is", "other"),
    ]
    qid = 1000
    for i in range(n_images):
        image_id = 100 + i
        path = img_dir / f"COCO_{split}_{image_id:012d}.jpg"
        colour = names[i % len(names)]
        if bad_images:
            kind = ["missing", "truncated", "text", "tiny", "huge", "grey", "cmyk", "rgba", "normal"][i % 9]
            if kind == "truncated":
                _shape_image(colour).save(path, "JPEG")
                path.write_bytes(path.read_bytes()[:60])
            elif kind == "text":
                path.write_text("this is not an image")
            elif kind == "tiny":
                Image.new("RGB", (1, 1), COLOURS[colour]).save(path, "JPEG")
            elif kind == "huge":
                Image.new("RGB", (6000, 6000), COLOURS[colour]).save(path, "JPEG", quality=50)
            elif kind == "grey":
                _shape_image(colour).convert("L").save(path, "JPEG")
            elif kind == "cmyk":
                _shape_image(colour).convert("CMYK").save(path, "JPEG")
            elif kind == "rgba":
                _shape_image(colour).convert("RGBA").save(path, "PNG")  # PNG bytes behind a .jpg name
            elif kind == "normal":
                _shape_image(colour, seed=i).save(path, "JPEG", quality=95)
        else:
            _shape_image(colour, seed=i).save(path, "JPEG", quality=95)
        for j in range(questions_per_image):
            q, qtype, atype = templates[j % len(templates)]
            ans = colour if qtype == "what color is the" else ("yes" if atype == "yes/no" else "shape")
            qs.append({"question_id": qid, "image_id": image_id, "question": q})
            anns.append(_annotation(qid, image_id, q, ans, qtype, atype))
            qid += 1
        if bad_images and i % 9 == 8:
            for q in questions or []:
                qs.append({"question_id": qid, "image_id": image_id, "question": q})
                anns.append(_annotation(qid, image_id, q, "red", "what color is the", "other"))
                qid += 1
    (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(
        json.dumps(
            {
                "info": {},
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": {},
                "data_subtype": split,
                "questions": qs,
            }
        )
    )
    (root / f"v2_mscoco_{split}_annotations.json").write_text(
        json.dumps({"info": {}, "license": {}, "data_subtype": split, "annotations": anns})
    )
    return root


def make_hf_copy(root: Path, n: int = 6) -> Path:
    """A ``datasets`` save_to_disk folder with HuggingFaceM4/VQAv2's columns."""
    import datasets

    rows = {
        "question_type": [],
        "multiple_choice_answer": [],
        "answers": [],
        "image_id": [],
        "answer_type": [],
        "question_id": [],
        "question": [],
        "image": [],
    }
    names = list(COLOURS)
    for i in range(n):
        c = names[i % len(names)]
        rows["question_type"].append("what color is the")
        rows["multiple_choice_answer"].append(c)
        rows["answers"].append([{"answer": c, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)])
        rows["image_id"].append(500 + i)
        rows["answer_type"].append("other")
        rows["question_id"].append(9000 + i)
        rows["question"].append("what color is the shape?")
        rows["image"].append(_shape_image(c, seed=i))
    features = datasets.Features(
        {
            "question_type": datasets.Value("string"),
            "multiple_choice_answer": datasets.Value("string"),
            "answers": [
                {
                    "answer": datasets.Value("string"),
                    "answer_confidence": datasets.Value("string"),
                    "answer_id": datasets.Value("int64"),
                }
            ],
            "image_id": datasets.Value("int64"),
            "answer_type": datasets.Value("string"),
            "question_id": datasets.Value("int64"),
            "question": datasets.Value("string"),
            "image": datasets.Image(),
        }
    )
    ds = datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows, features=features)})
    ds.save_to_disk(str(root))
    return root
