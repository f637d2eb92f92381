"""The scenes testbed: generated images whose evidence is known (``--dataset scenes``).

Each example is a 64 x 64 image of 2-5 non-overlapping shapes (circle, square, triangle; five colours;
sizes 12-20 px, so an object covers several 8 x 8 px regions) and one question whose answer depends on
known objects, with the pixel mask of those objects (CLEVR-XAI's ground truth, Arras et al. 2022):

====================  =========================================  ==========================  =========
family                example                                    mask                        mask kind
====================  =========================================  ==========================  =========
attribute             what color is the circle?                  that object                 single
                      what shape is the red object?
count                 how many blue shapes are there?            the counted objects         union
                                                                 (none counted: all objects) (all)
relation              is the circle left of the square?          both objects                union
existence             is there a green triangle?                 that object (absent: all)   single/all
====================  =========================================  ==========================  =========

Distractors share a colour or a shape with the target, so that the answer needs the attribute bound
to the right object. In attribute questions the asked attribute's values are drawn independently for
every object (until one repeats), so how often a value occurs in the image does not give the answer
away: a model must find the asked-about object. Everything is a pure function of ``(split, index)``: example ``i`` of a split is
the same on every machine, for any size of the split. The scene (``Scene``) travels with the example,
so the answer can be recomputed (``answer``), the scene re-rendered with one object edited (``edited``)
and its mask drawn (``mask``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # image side in pixels
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (210, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 210),
    "yellow": (225, 195, 30),
    "purple": (140, 60, 180),
}
BACKGROUND = (235, 235, 235)
FAMILIES = ("attribute", "count", "relation", "existence")
SPLIT_SIZES = {"train": 20_000, "test": 2_000}  # the default size of each split (``scenes:N`` sets another)
SEED = 2026  # the testbed's own seed: the same scenes everywhere
MIN_HALF, MAX_HALF = 6, 10  # object half-size in pixels (12-20 px across)
GAP = 2  # pixels between the bounding boxes of two objects
NUMBERS = ("0", "1", "2", "3", "4", "5")


@dataclass(frozen=True)
class Obj:
    """One object: ``shape``, ``colour``, centre ``(cx, cy)`` and half-size ``r`` in pixels."""

    shape: str
    colour: str
    cx: int
    cy: int
    r: int

    def box(self) -> tuple[int, int, int, int]:
        return self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r


@dataclass(frozen=True)
class Scene:
    """A scene and its question: ``objects``; ``family`` and its arguments ``args`` (see the module table);
    ``targets``: indices of the objects the answer depends on (empty: the mask is every object)."""

    objects: tuple[Obj, ...]
    family: str
    args: tuple[str, ...]
    targets: tuple[int, ...]

    @property
    def question(self) -> str:
        return question_text(self.family, self.args)

    @property
    def mask_kind(self) -> str:
        if not self.targets:
            return "all"
        return "single" if self.family in ("attribute", "existence") else "union"

    def to_dict(self) -> dict:
        return {
            "objects": [o.__dict__ for o in self.objects],
            "family": self.family,
            "args": list(self.args),
            "targets": list(self.targets),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(tuple(Obj(**o) for o in d["objects"]), d["family"], tuple(d["args"]), tuple(d["targets"]))


def question_text(family: str, args: tuple[str, ...]) -> str:
    if family == "attribute":
        kind, value = args  # ("color", <shape>) or ("shape", <colour>)
        return f"what color is the {value}?" if kind == "color" else f"what shape is the {value} object?"
    if family == "count":
        return f"how many {args[0]} shapes are there?"
    if family == "relation":
        return f"is the {args[0]} left of the {args[1]}?"
    if family == "existence":
        return f"is there a {args[0]} {args[1]}?"
    raise ValueError(f"unknown question family {family!r}")


def answer(scene: Scene) -> str:
    """The answer to ``scene``'s question, computed from its objects alone (what the generator claims)."""
    objs, f, a = scene.objects, scene.family, scene.args
    if f == "attribute":
        if a[0] == "color":
            (o,) = [o for o in objs if o.shape == a[1]]
            return o.colour
        (o,) = [o for o in objs if o.colour == a[1]]
        return o.shape
    if f == "count":
        return NUMBERS[sum(1 for o in objs if o.colour == a[0])]
    if f == "relation":
        (left,) = [o for o in objs if o.shape == a[0]]
        (right,) = [o for o in objs if o.shape == a[1]]
        return "yes" if left.cx < right.cx else "no"
    if f == "existence":
        return "yes" if any(o.colour == a[0] and o.shape == a[1] for o in objs) else "no"
    raise ValueError(f"unknown question family {f!r}")


def answer_type(scene: Scene) -> str:
    return {"attribute": "other", "count": "number"}.get(scene.family, "yes/no")


def question_type(scene: Scene) -> str:
    """VQA-v2-style question type: the question's first words."""
    q = scene.question
    for prefix in ("what color is the", "what shape is the", "how many", "is there a", "is the"):
        if q.startswith(prefix):
            return prefix
    return "other"


# --------------------------------------------------------------------------- drawing
def _draw(draw: ImageDraw.ImageDraw, o: Obj, fill) -> None:
    x0, y0, x1, y1 = o.box()
    if o.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif o.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif o.shape == "triangle":
        draw.polygon([(o.cx, y0), (x0, y1), (x1, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {o.shape!r}")


def render(scene: Scene) -> Image.Image:
    """The scene as a 64 x 64 RGB image."""
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw(draw, o, COLOURS[o.colour])
    return img


def object_mask(o: Obj) -> np.ndarray:
    """(64, 64) bool: the pixels ``render`` paints for ``o``."""
    m = Image.new("L", (SIZE, SIZE), 0)
    _draw(ImageDraw.Draw(m), o, 255)
    return np.asarray(m) > 0


def mask(scene: Scene) -> np.ndarray:
    """(64, 64) bool: the evidence of the answer: the target objects' pixels, or every object's when the
    question has no target (a count of nothing, an absent object)."""
    objs = [scene.objects[i] for i in scene.targets] if scene.targets else list(scene.objects)
    out = np.zeros((SIZE, SIZE), bool)
    for o in objs:
        out |= object_mask(o)
    return out


def edited(scene: Scene, index: int, colour: str | None = None, shape: str | None = None) -> Scene:
    """``scene`` with object ``index`` recoloured and/or reshaped (same place and size)."""
    objs = list(scene.objects)
    o = objs[index]
    objs[index] = replace(o, colour=colour or o.colour, shape=shape or o.shape)
    return replace(scene, objects=tuple(objs))


# --------------------------------------------------------------------------- generation
def _rng(split: str, index: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(f"{SEED}:{split}:{index}".encode()).digest()[:8], "little")
    return np.random.default_rng(key)


def _place(rng: np.random.Generator, placed: list[Obj], shape: str, colour: str, tries: int = 200) -> Obj | None:
    """An object at a random free spot (bounding boxes ``GAP`` apart, inside the image), or None."""
    for _ in range(tries):
        r = int(rng.integers(MIN_HALF, MAX_HALF + 1))
        cx, cy = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
        o = Obj(shape, colour, cx, cy, r)
        if all(
            o.cx + o.r + GAP < p.cx - p.r
            or p.cx + p.r + GAP < o.cx - o.r
            or o.cy + o.r + GAP < p.cy - p.r
            or p.cy + p.r + GAP < o.cy - o.r
            for p in placed
        ):
            return o
    return None


def _pick(rng, items, avoid=()):
    pool = [x for x in items if x not in avoid]
    return pool[int(rng.integers(len(pool)))]


def _repeating(rng, values, n: int) -> list[str]:
    """``n`` values drawn independently and uniformly from ``values``, redrawn until one repeats when
    ``n >= 3``. The condition is symmetric, so the values stay exchangeable: how often a value occurs
    says no more about which object is asked about than picking an object at random."""
    while True:
        out = [values[int(i)] for i in rng.integers(len(values), size=n)]
        if n < 3 or len(set(out)) < n:
            return out


def _attribute(rng, n: int):
    """Attribute question: the target first. The asked attribute's values are exchangeable across the
    objects (``_repeating``), so a distractor often shares the target's value - the answer needs the
    attribute bound to the right object - and no value count predicts the answer."""
    colours = list(COLOURS)
    if rng.random() < 0.5:  # what color is the <shape>: the shape is unique
        shape = _pick(rng, SHAPES)
        cols = _repeating(rng, colours, n)
        others = [(_pick(rng, SHAPES, (shape,)), c) for c in cols[1:]]
        return (shape, cols[0]), others, ("color", shape)
    colour = _pick(rng, colours)  # what shape is the <colour> object: the colour is unique
    shapes = _repeating(rng, list(SHAPES), n)
    others = [(s, _pick(rng, colours, (colour,))) for s in shapes[1:]]
    return (shapes[0], colour), others, ("shape", colour)


def generate(split: str, index: int) -> Scene:
    """Example ``index`` of ``split``: a pure function of both."""
    rng = _rng(split, index)
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    n = int(rng.integers(2, 6))  # objects in the scene
    colours = list(COLOURS)
    specs: list[tuple[str, str]] = []
    targets_first = 0  # how many of ``specs``' first entries are the targets
    if family == "attribute":
        target, others, args = _attribute(rng, n)
        specs, targets_first = [target, *others], 1
    elif family == "count":
        colour = _pick(rng, colours)
        k = int(rng.integers(0, min(n, 3) + 1))
        specs = [(_pick(rng, SHAPES), colour) for _ in range(k)]
        specs += [(_pick(rng, SHAPES), _pick(rng, colours, (colour,))) for _ in range(n - k)]
        targets_first, args = k, (colour,)
    elif family == "relation":
        a, b = rng.permutation(len(SHAPES))[:2]
        third = next(s for i, s in enumerate(SHAPES) if i not in (a, b))
        specs = [(SHAPES[a], _pick(rng, colours)), (SHAPES[b], _pick(rng, colours))]
        specs += [(third, _pick(rng, colours)) for _ in range(n - 2)]  # distractors: the third shape only
        targets_first, args = 2, (SHAPES[a], SHAPES[b])
    else:  # existence
        shape, colour = _pick(rng, SHAPES), _pick(rng, colours)
        present = rng.random() < 0.5
        # distractors share the colour or the shape, never both
        others = [
            (shape, _pick(rng, colours, (colour,))) if rng.random() < 0.5 else (_pick(rng, SHAPES, (shape,)), colour)
            for _ in range(n - 1 if present else n)
        ]
        specs = ([(shape, colour)] if present else []) + others
        targets_first, args = (1 if present else 0), (colour, shape)
    objects: list[Obj] = []
    for shape, colour in specs:
        o = _place(rng, objects, shape, colour)
        if o is None:  # no room: fewer distractors (never fewer targets, which come first)
            if len(objects) < max(targets_first, 2):
                return generate(split, index + 1_000_003)  # pragma: no cover - a crowded draw, redrawn
            break
        objects.append(o)
    if family == "relation" and abs(objects[0].cx - objects[1].cx) < 4:
        return generate(split, index + 1_000_003)  # "left of" must be clear: redraw
    order = rng.permutation(len(objects))  # targets are not always drawn first
    objects = [objects[i] for i in order]
    targets = tuple(sorted(int(np.flatnonzero(order == t)[0]) for t in range(targets_first)))
    return Scene(tuple(objects), family, tuple(args), targets)


def parse_spec(arg: str, split: str) -> int:
    """The size of ``split`` for ``--dataset scenes[:N]``."""
    from stcg.errors import StcgError

    if split not in SPLIT_SIZES:
        raise StcgError(f"scenes has splits {', '.join(SPLIT_SIZES)}, not {split!r}")
    if not arg:
        return SPLIT_SIZES[split]
    try:
        n = int(arg)
    except ValueError:
        raise StcgError(f"invalid dataset scenes:{arg}: use scenes or scenes:N with N >= 1") from None
    if n < 1:
        raise StcgError(f"invalid dataset scenes:{arg}: use scenes or scenes:N with N >= 1")
    return n


__all__ = [
    "Obj",
    "Scene",
    "generate",
    "render",
    "mask",
    "object_mask",
    "answer",
    "edited",
    "question_text",
    "SHAPES",
    "COLOURS",
    "FAMILIES",
    "SPLIT_SIZES",
]
