"""Ground-truth masks from annotations: ``--masks coco:<instances JSON>`` (docs/masks.md).

A VQA-v2 question about a COCO image gets, as its mask, the union of the instance masks of every COCO
category the question names (``named_categories``: category names, plurals and a small synonym table).
This is *plausibility* (agreement with human-annotated objects), not faithfulness: nothing checks that the
model's answer depends on those objects. Only the scenes testbed's masks are known to be the evidence.

Masks are computed lazily, on ``VQAExample.load_mask()``; opening a dataset only reads the JSON file and
matches questions to categories.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from stcg.errors import StcgError

SPEC_FORM = "coco:<path to a COCO instances_*.json file>"

MASK_KINDS = ("single", "union", "all")

SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("people", "man", "woman", "boy", "girl", "child", "kid", "player", "lady", "guy"),
    "tv": ("television", "tv set"),
    "couch": ("sofa",),
    "cell phone": ("phone", "cellphone", "mobile phone", "smartphone"),
    "motorcycle": ("motorbike",),
    "airplane": ("plane", "aeroplane", "airliner", "jet"),
    "bicycle": ("bike",),
    "dining table": ("table",),
    "potted plant": ("plant", "houseplant"),
    "sports ball": ("ball",),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "refrigerator": ("fridge",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "fire hydrant": ("hydrant",),
    "tennis racket": ("racket", "racquet"),
    "baseball glove": ("mitt",),
    "teddy bear": ("teddy",),
    "skis": ("ski",),
    "cup": ("mug",),
    "handbag": ("purse",),
    "remote": ("remote control",),
    "laptop": ("laptop computer",),
}
"""Extra words for a COCO category (singular forms; plurals are added by ``plural``)."""

_IRREGULAR = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "knife": "knives",
    "mouse": "mice",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
    "people": "people",
}


def plural(term: str) -> str:
    """The plural of a (possibly multi-word) name: its last word inflected ("traffic light" -> "traffic lights")."""
    *head, last = term.split(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        word = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return " ".join([*head, word])


def _norm(text: str) -> str:
    return " ".join(re.split(r"[\s\-_]+", text.strip().lower()))


class CategoryMatcher:
    """Finds the categories a question names: word-boundary matches on the lower-cased question, longest
    term first, so "hot dog" is the hot dog (not a dog) and "teddy bear" not a bear."""

    def __init__(self, names: Iterable[str]):
        self.term_to_name: dict[str, str] = {}
        for name in names:
            base = _norm(name)
            for word in (base, *SYNONYMS.get(base, ())):
                for form in (_norm(word), plural(_norm(word))):
                    self.term_to_name.setdefault(form, name)
        terms = sorted(self.term_to_name, key=lambda t: (-len(t), t))
        alts = "|".join(r"[\s\-]+".join(re.escape(w) for w in t.split(" ")) for t in terms)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alts})(?![a-z0-9])") if terms else None

    def __call__(self, question: str) -> list[str]:
        """The category names ``question`` names, in order of first mention."""
        if self._pattern is None or not isinstance(question, str):
            return []
        found: list[str] = []
        for m in self._pattern.finditer(question.lower()):
            name = self.term_to_name[_norm(m.group(0))]
            if name not in found:
                found.append(name)
        return found


def named_categories(question: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` (COCO category names) that ``question`` names, by name, plural or synonym."""
    return CategoryMatcher(names)(question)


# --------------------------------------------------------------------------- reading the instances file
def _invalid(path: Path, why: str) -> StcgError:
    return StcgError(f"not a COCO instances file ({why}): {path}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_instances(path: str | Path, image_ids: set[int] | None = None) -> dict:
    """The COCO instances file at ``path``, checked, as ``{"images": {id: image}, "categories": {id: name},
    "annotations": {image id: [annotation]}}``, keeping only ``image_ids`` (all when None).

    A missing, unreadable or malformed file is a one-line ``StcgError``."""
    p = Path(path)
    if not p.is_file():
        raise StcgError(f"COCO instances file not found: {p}")
    try:
        with p.open("rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _invalid(p, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None
    if not isinstance(data, dict):
        raise _invalid(p, "the top level is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _invalid(p, f"no '{key}' list")
    cats: dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise _invalid(p, f"category #{i} lacks an integer id or a name")
        cats[c["id"]] = c["name"]
    images: dict[int, dict] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise _invalid(p, f"image #{i} lacks an integer id")
        if image_ids is not None and im["id"] not in image_ids:
            continue
        if not all(_is_int(im.get(k)) and im[k] > 0 for k in ("height", "width")):
            raise _invalid(p, f"image {im['id']} lacks a positive integer height and width")
        images[im["id"]] = {"id": im["id"], "height": im["height"], "width": im["width"]}
    anns: dict[int, list[dict]] = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not _is_int(a.get("image_id")) or not _is_int(a.get("category_id")):
            raise _invalid(p, f"annotation #{i} lacks an integer image_id or category_id")
        if a["category_id"] not in cats:
            raise _invalid(p, f"annotation #{i} has category_id {a['category_id']}, which is not in 'categories'")
        if a["image_id"] not in images:
            continue  # another image, or (checked here) one the file does not list
        seg = a.get("segmentation")
        if not (isinstance(seg, list) or (isinstance(seg, dict) and "counts" in seg and "size" in seg)):
            raise _invalid(p, f"annotation #{i} has no polygon list or RLE segmentation")
        anns.setdefault(a["image_id"], []).append(
            {
                "id": a.get("id", i),
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "segmentation": seg,
                "iscrowd": int(bool(a.get("iscrowd", 0))),
            }
        )
    return {"images": images, "categories": cats, "annotations": anns}


# --------------------------------------------------------------------------- the lazy mask
_ORIENTATION_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                          6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip
"""EXIF orientation -> the PIL transposition ``ImageOps.exif_transpose`` applies (and so ``open_image``)."""


def _file_header(path: str) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of the image file at ``path``, reading its header only."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise StcgError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            orientation = im.getexif().get(0x0112, 1)
            return im.width, im.height, orientation if orientation in _ORIENTATION_TRANSPOSE else 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise StcgError(f"not a readable image ({type(e).__name__}: {str(e)[:120]}): {p}") from None


class CocoMask:
    """The mask of one example: the union of COCO instance masks (``COCO.annToMask``) on its image.

    A plain object (no closure), so examples carrying it can be pickled. Calling it returns the (H, W) bool
    mask in the frame of the example's upright image (``VQAExample.load_image``): annotations are in the
    stored pixels' frame, so an EXIF orientation of the file is applied to the mask as to the image."""

    def __init__(self, image: dict, annotations: list[dict], image_path: str, image_loader: Callable | None):
        self.image, self.annotations = image, annotations
        self.image_path, self.image_loader = image_path, image_loader

    def _raw(self) -> np.ndarray:
        from pycocotools.coco import COCO

        h, w = self.image["height"], self.image["width"]
        coco = COCO()  # no file: silent; annToMask only needs the image's size
        coco.imgs[self.image["id"]] = self.image
        out = np.zeros((h, w), bool)
        for a in self.annotations:
            try:
                with warnings.catch_warnings():  # pycocotools' decode under numpy 2: harmless, once per mask
                    warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                    m = coco.annToMask(a)
            except Exception as e:  # pycocotools raises many types for a malformed segmentation
                raise StcgError(
                    f"COCO annotation {a['id']} of image {self.image['id']} cannot be rasterised: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                ) from None
            if m.shape != (h, w):
                raise StcgError(
                    f"COCO annotation {a['id']} of image {self.image['id']} is {m.shape[1]} x {m.shape[0]} px "
                    f"but the image is {w} x {h} in the annotations"
                )
            out |= m.astype(bool)
        return out

    def __call__(self) -> np.ndarray:
        from PIL import Image

        h, w = self.image["height"], self.image["width"]
        if self.image_loader is not None:
            size = self.image_loader().size
            fw, fh, orientation = size[0], size[1], 1  # already upright
        else:
            fw, fh, orientation = _file_header(self.image_path)
        upright = (fh, fw) if orientation in (5, 6, 7, 8) else (fw, fh)
        if (fw, fh) == (w, h):  # annotated on the stored pixels (COCO): turn the mask as the image is turned
            mask = self._raw()
            if orientation != 1:
                method = getattr(Image.Transpose, _ORIENTATION_TRANSPOSE[orientation])
                mask = np.asarray(Image.fromarray(mask).transpose(method)).astype(bool)
            return mask
        if upright == (w, h):  # annotated on the upright image
            return self._raw()
        src = "its image" if self.image_loader is not None else self.image_path
        raise StcgError(f"COCO image {self.image['id']} is {w} x {h} px in the annotations but {src} is {fw} x {fh}")


# --------------------------------------------------------------------------- attaching masks to examples
def _coco_path(spec) -> Path:
    kind, sep, arg = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if kind != "coco" or not sep or not arg.strip():
        raise StcgError(f"--masks must be {SPEC_FORM}, not {spec!r}")
    return Path(arg).expanduser()


def attach_masks(examples: list, spec: str, log: Callable[[str], None] | None = None) -> list:
    """``examples`` with ground-truth masks from ``spec`` (``coco:<instances JSON>``), lazily loaded.

    For each VQA-v2 (or ``hf:`` VQA-v2 copy) example whose image id is in the file, the mask is the union
    of the instances of the COCO categories its question names (``named_categories``) in that image;
    ``mask_kind`` is ``single`` for one (non-crowd) instance, ``union`` otherwise. An example whose question
    names no category present in its image gets no mask; one that carries its own mask keeps it.
    Anything but ``coco:PATH``, or a missing or malformed file, is a one-line ``StcgError``."""
    path = _coco_path(spec)
    wrong = sorted({e.example_id.partition(":")[0] for e in examples} - {"vqa-v2", "hf"})
    if wrong:
        raise StcgError(
            f"--masks coco: gives masks to COCO images (vqa-v2:<folder> or hf: VQA-v2 datasets), "
            f"not to {', '.join(wrong)} examples"
        )
    ids: dict[int, list[int]] = {}
    own = no_image = 0
    for k, e in enumerate(examples):
        if e.has_mask:
            own += 1
            continue
        try:
            ids.setdefault(int(str(e.image_id)), []).append(k)
        except (TypeError, ValueError):
            no_image += 1
    coco = read_instances(path, set(ids))
    match = CategoryMatcher(coco["categories"].values())
    out = list(examples)
    got = no_category = 0
    for image_id, ks in ids.items():
        image = coco["images"].get(image_id)
        if image is None:
            no_image += len(ks)
            continue
        anns = coco["annotations"].get(image_id, [])
        for k in ks:
            e = examples[k]
            names = set(match(e.question))
            chosen = [a for a in anns if coco["categories"][a["category_id"]] in names]
            if not chosen:
                no_category += 1
                continue
            kind = "single" if len(chosen) == 1 and not chosen[0]["iscrowd"] else "union"
            present = sorted({coco["categories"][a["category_id"]] for a in chosen})
            extra = {
                **e.extra,
                "mask_loader": CocoMask(image, chosen, e.image_path, e.extra.get("image_loader")),
                "mask_kind": kind,
                "mask_source": "coco",
                "mask_categories": present,
            }
            out[k] = replace(e, extra=extra)
            got += 1
    if log is not None:
        parts = [f"{no_category} name no COCO category present in their image"]
        if no_image:
            parts.append(f"{no_image} have an image not in the file")
        if own:
            parts.append(f"{own} keep their own mask")
        log(
            f"masks: {got} of {len(examples)} examples have a mask from {path.name} (objects their question "
            f"names: plausibility, not faithfulness); {', '.join(parts)}"
        )
    return out
