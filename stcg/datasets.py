"""VQA datasets as one stream of ``VQAExample`` records.

easy-VQA comes from the installed ``easy_vqa`` package (images + questions, MIT licence).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from stcg.errors import StcgError

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


# --------------------------------------------------------------------------- VQA-v2, official layout
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
    import json

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


# --------------------------------------------------------------------------- HF datasets copy
HF_MASK_COLUMNS = ("mask", "gt_mask")
"""Names of an ``hf:`` dataset's ground-truth mask column (the first present is used; docs/masks.md)."""

HF_MASK_KINDS = ("single", "union", "all")


def _hf_image_size(record, decoded: Callable[[], object]) -> tuple[int, int]:
    """(width, height) of an ``hf:`` example's upright image from its stored record (``{bytes, path}`` or a
    path), reading the header only; ``decoded()`` (the image itself) when the record is of another form."""
    import io

    from PIL import Image

    src = None
    if isinstance(record, dict):
        src = io.BytesIO(record["bytes"]) if record.get("bytes") else record.get("path")
    elif isinstance(record, str):
        src = record
    if src is not None:
        try:
            with Image.open(src) as im:
                w, h = im.size
                return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
        except Exception:  # unreadable here: the image loader gives the proper error
            pass
    return decoded().size


def _hf_mask_array(value, where: str):
    """(H, W) bool of an ``hf:`` mask cell: a PIL image (nonzero = inside; RGB: any channel) or an
    array-like of shape (H, W) (nested lists, numpy); else a one-line ``StcgError``."""
    import numpy as np
    from PIL import Image, ImageOps

    if isinstance(value, Image.Image):
        im = ImageOps.exif_transpose(value)
        if im.mode not in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB"):
            im = im.convert("RGB")
        arr = np.asarray(im)
        return arr.any(axis=2) if arr.ndim == 3 else arr != 0
    if value is None:
        raise StcgError(f"{where} has no mask")
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise StcgError(f"{where}: the mask is not a 2-D array (rows of different lengths)") from None
    if arr.ndim != 2 or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise StcgError(f"{where}: the mask is not a 2-D array of numbers or booleans (shape {arr.shape})")
    return arr != 0


def load_hf_vqa(name_or_path: str, split: str = "validation") -> list[VQAExample]:
    """VQA-v2 from a HuggingFace ``datasets`` copy: a ``save_to_disk`` folder, or a name ``load_dataset`` knows.

    Columns used (those of HuggingFaceM4/VQAv2): question_id, question, image, image_id,
    question_type, answer_type, multiple_choice_answer, answers ([{answer: ...}] or [str]).

    A ground-truth mask column (``mask`` or ``gt_mask``: a PIL image, nonzero = inside, or an (H, W) array)
    gives the examples whose cell is not null a lazy ``mask_loader``, and ``mask_kind`` (a column of
    single/union/all, else ``union``); a mask whose shape is not the image's is a one-line ``StcgError``
    when loaded (docs/masks.md).
    """
    import datasets

    path = Path(name_or_path)
    try:
        if path.exists():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(name_or_path, split=split)
    except Exception as e:  # datasets raises many types for missing/offline data
        raise StcgError(
            f"could not open dataset {name_or_path!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise StcgError(f"dataset {name_or_path!r} has splits {', '.join(ds)}, not {split!r}")
        ds = ds[split]
    missing = {"question", "image"} - set(ds.column_names)
    if missing:
        raise StcgError(f"dataset {name_or_path!r} lacks columns {sorted(missing)} (has {ds.column_names})")
    mask_col = next((c for c in HF_MASK_COLUMNS if c in ds.column_names), None)
    meta_cols = [c for c in ds.column_names if c not in ("image", mask_col)]
    table = ds.select_columns(meta_cols).to_list()
    images = ds.select_columns(["image"])  # decodes only the image, not the mask, per example
    has_mask: list[bool] = []
    if mask_col is not None:
        masks = ds.select_columns([mask_col])
        has_mask = masks.with_format("arrow")[:].column(0).is_valid().to_pylist()  # no decoding
        raw_images = images.with_format("arrow")
    out = []
    for i, row in enumerate(table):
        raw = row.get("answers") or []
        answers = tuple(a["answer"] if isinstance(a, dict) else str(a) for a in raw)
        mc = row.get("multiple_choice_answer")
        qid = row.get("question_id", i)

        def loader(i=i):
            from stcg.images import open_image, upright_rgb

            img = images[i]["image"]
            return open_image(img) if isinstance(img, str) else upright_rgb(img)

        extra = {"multiple_choice_answer": mc, "image_loader": loader} if mc else {"image_loader": loader}
        if has_mask and has_mask[i]:
            kind = row["mask_kind"] if "mask_kind" in row else "union"
            if kind not in HF_MASK_KINDS:
                raise StcgError(
                    f"dataset {name_or_path!r} row {i}: mask_kind is {kind!r}, not one of {', '.join(HF_MASK_KINDS)}"
                )

            def mask_loader(i=i, loader=loader):
                where = f"mask of row {i} of {name_or_path!r}"
                try:
                    value = masks[i][mask_col]
                except Exception as e:  # a corrupt stored image or array
                    raise StcgError(f"{where} cannot be read: {type(e).__name__}: {str(e)[:120]}") from None
                mask = _hf_mask_array(value, where)
                w, h = _hf_image_size(raw_images[i].column(0)[0].as_py(), loader)
                if mask.shape != (h, w):
                    raise StcgError(f"{where} is {mask.shape[1]} x {mask.shape[0]} px but its image is {w} x {h}")
                return mask

            extra.update(mask_loader=mask_loader, mask_kind=kind)
        out.append(
            VQAExample(
                f"hf:{path.name if path.exists() else name_or_path}:{split}:{qid}",
                f"{name_or_path}#{i}",
                row["question"],
                answers or ((mc,) if mc else ("",)),
                row.get("question_type") or "unknown",
                row.get("answer_type") or "unknown",
                str(row.get("image_id", i)),
                extra,
            )
        )
    return out


# --------------------------------------------------------------------------- scenes (generated)
def load_scenes(split: str = "test", size: str = "") -> list[VQAExample]:
    """The scenes testbed (``stcg.scenes``): ``size`` examples of ``split`` (``scenes:N``; default
    ``SPLIT_SIZES``), each rendered on demand, with its scene (``extra["scene"]``, a dict) and mask kind."""
    from stcg import scenes

    n = scenes.parse_spec(size, split)
    out = []
    for i in range(n):
        sc = scenes.generate(split, i)

        def loader(sc=sc):
            return scenes.render(sc)

        def mask_loader(sc=sc):
            return scenes.mask(sc)

        out.append(
            VQAExample(
                f"scenes:{split}:{i}",
                f"scenes:{split}:{i}",
                sc.question,
                (scenes.answer(sc),),
                scenes.question_type(sc),
                scenes.answer_type(sc),
                str(i),
                {"image_loader": loader, "mask_loader": mask_loader, "scene": sc.to_dict(), "mask_kind": sc.mask_kind},
            )
        )
    return out


# --------------------------------------------------------------------------- selection
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
    """Examples of ``spec``: ``easy-vqa``, ``scenes[:N]`` (the generated testbed, ``stcg.scenes``),
    ``vqa-v2:<folder>``, or ``hf:<save_to_disk folder or dataset name>``,
    selected (``select``) and with their text checked (``check_text``: an example whose text cannot be stored
    comes back marked ``invalid``, for ingestion to record as failed).

    ``masks`` (``coco:<instances JSON>``) gives examples ground-truth masks from annotations
    (``stcg.masks``); scenes and ``hf:`` datasets with a mask column carry their own."""
    if limit is not None and limit < 0:
        raise StcgError("--limit must be >= 0")
    shard_t = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    kind, _, arg = spec.partition(":")
    if kind == "easy-vqa" and not arg:
        examples = load_easy_vqa(split or "test")
    elif kind == "vqa-v2" and arg:
        examples = load_vqa_v2(arg, split or "val2014")
    elif kind == "hf" and arg:
        examples = load_hf_vqa(arg, split or "validation")
    elif kind == "scenes":
        examples = load_scenes(split or "test", arg)
    else:
        raise StcgError(f"unknown dataset {spec!r}: use easy-vqa, scenes[:N], vqa-v2:<folder> or hf:<folder or name>")
    chosen = select(examples, limit, question_type, answer_type, sample, seed, shard_t, log)
    if masks is not None:
        from stcg.masks import attach_masks

        chosen = attach_masks(chosen, masks, log=log)
    return [check_text(e) for e in chosen]
