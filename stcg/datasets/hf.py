"""A Hugging Face ``datasets`` copy (``--dataset hf:<save_to_disk folder or dataset name>``), optionally with a
ground-truth mask column."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from stcg.datasets.example import VQAExample
from stcg.datasets.registry import DatasetSource, register_dataset
from stcg.errors import StcgError

HF_MASK_COLUMNS = ("mask", "gt_mask")
"""Names of an ``hf:`` dataset's ground-truth mask column (the first present is used; docs/masks.md)."""

HF_MASK_KINDS = ("single", "union", "all")


def _hf_image_size(record, decoded: Callable[[], object]) -> tuple[int, int]:
    """(width, height) of an ``hf:`` example's upright image from its stored record (``{bytes, path}`` or a
    path), reading the header only; ``decoded()`` (the image itself) when the record is of another form."""

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


register_dataset(
    DatasetSource(
        "hf",
        "hf:<folder or name>",
        "a Hugging Face datasets copy: a save_to_disk folder or a dataset name",
        lambda arg, split: load_hf_vqa(arg, split or "validation"),
        takes_arg=True,
        default_split="validation",
    )
)
