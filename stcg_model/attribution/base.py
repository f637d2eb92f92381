"""The attribution-method interface and its registry (docs/spec.md section 6).

Every method maps a batch of (image, prompt, answer) rows to the arrays of section 2, normalised
the same way, so links, templates and pictures work per method::

    C (Q, P)   query slot -> region, rows sum to 1            (None where undefined)
    W (n, P)   question token -> region, rows sum to 1        (None where undefined: occlusion)
    S (T, P)   answer step -> region, rows sum to 1           (None where undefined)
    region (P,) region attribution, non-negative, sums to 1

Add a method by name, in one file::

    @register_attribution
    class MyMethod(AttributionMethod):
        name = "my_method"
        needs_gradients = False
        def compute(self, lm, batch): ...

``attention`` (the raw attention of section 2, the engine's own numbers) stays the default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stcg.errors import StcgError

EPS = 1e-12


@dataclass
class MethodMaps:
    """One example's explanation under one method (shapes in the module docstring)."""

    method: str
    region: np.ndarray
    C: np.ndarray | None = None
    W: np.ndarray | None = None
    S: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The defined arrays as float32, by name (``region``, ``C``, ``W``, ``S``)."""
        out = {"region": self.region}
        out.update({k: v for k, v in (("C", self.C), ("W", self.W), ("S", self.S)) if v is not None})
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


@dataclass
class AttributionBatch:
    """Rows to explain, as the language model sees them.

    ``pixel_values`` (B, 3, H, W) is the processor output of each row's image, on the model's
    device; ``images`` the same images as (h, w, 3) uint8 arrays (for methods that change pixels);
    ``grids`` each image's ``RegionGrid``; ``prompt_ids[r]`` the language-model input after the
    query slots are prepended: ``[image token x Q | prompt tokens (| </s> for T5)]``;
    ``answers[r]`` the answer token ids to explain (the clean greedy answer, ``</s>`` included);
    ``token_positions[r]`` the positions of the question tokens in ``prompt_ids[r]`` (the STCG's
    Token nodes); ``is_eos[r]`` (T,) which answer steps are ``</s>``; ``fill`` the grey (RGB in
    [0, 1]) that removes a region; ``to_pixels`` turns uint8 images into ``pixel_values``;
    ``gt[r]`` the (P,) ground-truth mask share per region of row ``r`` (None: no mask) and
    ``keys[r]`` the row's example id (what seeded reference methods draw from).
    """

    pixel_values: torch.Tensor
    images: list[np.ndarray]
    grids: list
    prompt_ids: list[list[int]]
    answers: list[list[int]]
    token_positions: list[np.ndarray]
    is_eos: list[np.ndarray]
    fill: tuple[float, float, float]
    to_pixels: Callable[[Sequence[np.ndarray]], torch.Tensor]
    gt: list[np.ndarray | None] | None = None
    keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.answers)


class AttributionMethod:
    """Base of every attribution method: ``compute`` returns one ``MethodMaps`` per batch row."""

    name: str = ""
    needs_gradients: bool = False
    needs_masks: bool = False  # a reference explanation made from the ground truth (offered only with masks)
    in_all: bool = True  # part of ``--attributions all`` (variants kept as options say False)
    description: str = ""

    def compute(self, lm, batch: AttributionBatch) -> list[MethodMaps]:
        raise NotImplementedError


_METHODS: dict[str, type[AttributionMethod]] = {}


def register_attribution(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: make ``cls`` available by ``cls.name`` (a new name; lower-case, no commas)."""
    if not cls.name or not cls.name.replace("_", "").isalnum() or cls.name != cls.name.lower():
        raise ValueError(f"attribution method name {cls.name!r}: use lower-case letters, digits and _")
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise ValueError(f"attribution method {cls.name!r} is already registered")
    _METHODS[cls.name] = cls
    return cls


def attribution_names() -> list[str]:
    """Registered method names, built-ins first in their documented order (the package's ``__init__``
    imports them before anything here runs)."""
    return list(_METHODS)


def registry_order(names: Sequence[str]) -> list[str]:
    """``names`` in the registry's order (``attention``, the built-ins, then methods registered later; an
    unregistered name last, by name): the order a graph keeps its methods in (``STCGraph.methods``)."""
    order = {n: i for i, n in enumerate(_METHODS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def unregister_attribution(name: str) -> None:
    """Remove ``name`` (for tests that register a throw-away method)."""
    _METHODS.pop(name, None)


def attributions_help() -> str:
    """``--attributions`` help, from the registry: the methods of ``all``, the references offered with
    ground-truth masks, the options."""
    core = [n for n, c in _METHODS.items() if c.in_all and not c.needs_masks]
    refs = [n for n, c in _METHODS.items() if c.in_all and c.needs_masks]
    opts = [f"{n} ({c.description})" for n, c in _METHODS.items() if not c.in_all]
    return (
        f"Attribution methods to compute and score: {', '.join(core)} (comma-separated) or 'all' (those "
        f"{len(core)}; with ground-truth masks, e.g. --dataset scenes, also the references {' and '.join(refs)})"
        + (f"; options: {'; '.join(opts)}" if opts else "")
        + ". Every method beyond attention adds its maps under each perturbation and a faithfulness pass "
        "(deletion, insertion, comprehensiveness, sufficiency; with masks also mass accuracy, rank accuracy, "
        "pointing game)."
    )


def get_attribution(name: str) -> AttributionMethod:
    """A fresh instance of the method called ``name``; one-line ``StcgError`` for an unknown name."""
    if name not in _METHODS:
        raise StcgError(f"unknown attribution method {name!r}; known: {', '.join(_METHODS)}")
    return _METHODS[name]()


def parse_attributions(text: str | Sequence[str], masks: bool = False) -> list[str]:
    """``"all"`` or ``"attention,relevancy"`` -> validated names in order (``attention`` always first).

    ``all`` is every method marked ``in_all``; those that need ground-truth masks (``oracle``,
    ``random``) only when ``masks`` (the dataset has them), and naming one without is an error."""
    if text == "all":
        names = [n for n, c in _METHODS.items() if c.in_all and (masks or not c.needs_masks)]
    else:
        names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    for n in names:
        if get_attribution(n).needs_masks and not masks:
            raise StcgError(
                f"attribution method {n!r} needs ground-truth masks: use a dataset with masks "
                "(--dataset scenes, an hf: dataset with a mask column, or --masks coco:<instances JSON>)"
            )
    if len(set(names)) != len(names):
        raise StcgError(f"an attribution method is named twice in {text!r}")
    return ["attention"] + [n for n in names if n != "attention"]


def region_from_steps(S: np.ndarray, is_eos: np.ndarray) -> np.ndarray:
    """(P,) region attribution: the mean of ``S`` over the answer's content steps (all steps when
    the answer is only ``</s>``), as the engine computes the clean attribution."""
    rows = S[~is_eos] if (~is_eos).any() else S
    return rows.mean(0)


def normalised(x: np.ndarray) -> np.ndarray:
    """Non-negative, summing to 1 along the last axis (an all-zero row becomes uniform)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    s = x.sum(-1, keepdims=True)
    return np.where(s > EPS, x / np.where(s > EPS, s, 1.0), 1.0 / x.shape[-1])


def subset_batch(batch: AttributionBatch, rows: list[int]) -> AttributionBatch:
    """The batch's rows ``rows`` (repeats allowed), for passes over modified images of those rows."""
    return AttributionBatch(
        pixel_values=batch.pixel_values[rows],
        images=[batch.images[r] for r in rows],
        grids=[batch.grids[r] for r in rows],
        prompt_ids=[batch.prompt_ids[r] for r in rows],
        answers=[batch.answers[r] for r in rows],
        token_positions=[batch.token_positions[r] for r in rows],
        is_eos=[batch.is_eos[r] for r in rows],
        fill=batch.fill,
        to_pixels=batch.to_pixels,
        gt=None if batch.gt is None else [batch.gt[r] for r in rows],
        keys=None if batch.keys is None else [batch.keys[r] for r in rows],
    )


def masks_of(batch: AttributionBatch, name: str) -> list[np.ndarray]:
    """Per row, the ground-truth region shares (P,); one-line error naming ``name`` when a row has none."""
    gt = batch.gt or [None] * len(batch)
    if any(g is None for g in gt):
        raise StcgError(f"attribution method {name!r} needs a ground-truth mask for every example")
    return [np.asarray(g, dtype=np.float64) for g in gt]


def compute_methods(lm, batch: AttributionBatch, names) -> dict[str, list[MethodMaps]]:
    """``{method: per-row MethodMaps}`` for each name (see ``base.parse_attributions``)."""
    return {n: get_attribution(n).compute(lm, batch) for n in names}
