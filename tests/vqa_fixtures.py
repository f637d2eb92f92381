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


# --------------------------------------------------------------------------- ground-truth masks (docs/masks.md)
COCO_CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "vehicle", "id": 4, "name": "motorcycle"},
    {"supercategory": "outdoor", "id": 10, "name": "traffic light"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "animal", "id": 23, "name": "bear"},
    {"supercategory": "food", "id": 58, "name": "hot dog"},
    {"supercategory": "furniture", "id": 63, "name": "couch"},
    {"supercategory": "electronic", "id": 72, "name": "tv"},
    {"supercategory": "indoor", "id": 88, "name": "teddy bear"},
]
"""A subset of the official COCO categories, with their official ids."""


def rect_polygon(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A COCO polygon of the rectangle [x0, x1) x [y0, y1) (pycocotools fills exactly those pixels)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a bool mask (column-major runs, starting with a run of zeros)."""
    flat = np.asarray(mask, bool).flatten(order="F")
    counts, current, run = [], False, 0
    for v in flat:
        if bool(v) == current:
            run += 1
        else:
            counts.append(run)
            current, run = bool(v), 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def make_coco_vqa_folder(
    root: Path,
    questions: list[tuple[int, str]],
    image_sizes: dict[int, tuple[int, int]],
    split: str = "val2014",
    file_sizes: dict[int, tuple[int, int]] | None = None,
    exif_orientation: dict[int, int] | None = None,
) -> Path:
    """A VQA-v2 folder (official JSON, ``<split>/COCO_<split>_<id>.jpg``) with one question per
    ``(image_id, question)``; images are (width, height) ``image_sizes`` unless ``file_sizes`` says otherwise
    (a file whose size disagrees with its annotations); ``exif_orientation`` stores the image's pixels
    in the raw frame with that EXIF orientation tag."""
    root = Path(root)
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    for image_id, size in image_sizes.items():
        w, h = (file_sizes or {}).get(image_id, size)
        img = np.full((h, w, 3), 240, np.uint8)
        img[h // 4 : h // 2, w // 4 : w // 2] = COLOURS["red"]
        im = Image.fromarray(img)
        path = img_dir / f"COCO_{split}_{image_id:012d}.jpg"
        orientation = (exif_orientation or {}).get(image_id)
        if orientation:
            exif = Image.Exif()
            exif[0x0112] = orientation
            im.save(path, "JPEG", quality=95, exif=exif.tobytes())
        else:
            im.save(path, "JPEG", quality=95)
    qs, anns = [], []
    for k, (image_id, q) in enumerate(questions):
        qs.append({"question_id": 5000 + k, "image_id": image_id, "question": q})
        anns.append(_annotation(5000 + k, image_id, q, "yes", "is the", "yes/no"))
    (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(
        json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                    "data_subtype": split, "questions": qs})
    )  # fmt: skip
    (root / f"v2_mscoco_{split}_annotations.json").write_text(
        json.dumps({"info": {}, "license": {}, "data_subtype": split, "annotations": anns})
    )
    return root


def write_coco_instances(
    path: Path, image_sizes: dict[int, tuple[int, int]], annotations: list[dict], split: str = "val2014"
) -> Path:
    """``path``: a COCO instances file (info, licenses, images, annotations, categories) in the official format;
    ``annotations`` need image_id, category_id and segmentation (polygons, or RLE with iscrowd=1)."""
    images = [
        {"license": 1, "file_name": f"COCO_{split}_{i:012d}.jpg", "coco_url": "", "height": h, "width": w,
         "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": i}
        for i, (w, h) in image_sizes.items()
    ]  # fmt: skip
    anns = []
    for k, a in enumerate(annotations):
        ann = {"iscrowd": 0, "area": 0.0, "bbox": [0, 0, 0, 0], "id": 900000 + k, **a}
        anns.append(ann)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"info": {"description": "test"}, "licenses": [{"url": "", "id": 1, "name": "test"}], "images": images,
             "annotations": anns, "categories": COCO_CATEGORIES}
        )
    )  # fmt: skip
    return path


def make_hf_mask_copy(
    root: Path,
    masks: list,
    image_sizes: list[tuple[int, int]],
    column: str = "mask",
    as_image: bool = True,
    mask_kinds: list | None = None,
) -> Path:
    """A ``save_to_disk`` folder (HuggingFaceM4/VQAv2's columns) whose ``column`` holds ``masks``: PIL images
    (``as_image``: a ``datasets.Image`` column) or 2-D uint8 arrays (a nested-list column); None = no mask.
    ``image_sizes`` are the (width, height) of the example images; ``mask_kinds`` an optional column."""
    import datasets

    n = len(masks)
    rows = {
        "question_id": [7000 + i for i in range(n)],
        "image_id": [600 + i for i in range(n)],
        "question": ["what color is the shape?"] * n,
        "question_type": ["what color is the"] * n,
        "answer_type": ["other"] * n,
        "multiple_choice_answer": ["red"] * n,
        "answers": [["red"] * 10] * n,
        "image": [_shape_image("red", size=image_sizes[i], seed=i) for i in range(n)],
        column: [None if m is None else (m if as_image else np.asarray(m, np.uint8).tolist()) for m in masks],
    }
    features = {
        "question_id": datasets.Value("int64"),
        "image_id": datasets.Value("int64"),
        "question": datasets.Value("string"),
        "question_type": datasets.Value("string"),
        "answer_type": datasets.Value("string"),
        "multiple_choice_answer": datasets.Value("string"),
        "answers": datasets.Sequence(datasets.Value("string")),
        "image": datasets.Image(),
        column: datasets.Image() if as_image else datasets.Sequence(datasets.Sequence(datasets.Value("uint8"))),
    }
    if mask_kinds is not None:
        rows["mask_kind"] = mask_kinds
        features["mask_kind"] = datasets.Value("string")
    ds = datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows, features=datasets.Features(features))})
    ds.save_to_disk(str(root))
    return root
