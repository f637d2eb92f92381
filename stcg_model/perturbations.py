"""Image perturbations (docs/spec.md section 3): pure functions of the original image.

Every perturbation maps an (H, W, 3) float32 array in [0, 1] to a new array of the same shape.
Randomness comes only from the ``numpy.random.Generator`` it is handed, which the caller seeds
from (seed, example key, perturbation name), so results are reproducible. Add your own, with the
range of each parameter (checked before any model work; a parameter without one is passed as given)::

    @register_perturbation("blur", defaults={"radius": 2.0}, ranges={"radius": ParamRange(0.0, 50.0)})
    def blur(image, params, rng, ctx): ...

The engine works on 8-bit images (what the processor sees anyway): ``apply_perturbation`` on a
uint8 image returns what the float result would be once saved as an 8-bit image (``quantise``).
Perturbations registered with ``uint8=True`` compute that directly on the uint8 array (4x less
memory traffic; the built-ins do, and tests check both paths agree exactly); any other
perturbation gets the float image and its result is quantised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from stcg.errors import StcgError
from stcg.images import quantise
from stcg_model.maths.regions import RegionGrid, fill_rect, top_fraction
from stcg_model.maths.seeding import rng_for

Image = np.ndarray  # (H, W, 3) float32 in [0, 1], or uint8 for perturbations registered with uint8=True


def to_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] (float input passes through)."""
    return image if image.dtype != np.uint8 else np.asarray(image, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class PerturbationContext:
    """What a perturbation may know besides the image."""

    fill: tuple[float, float, float]  # grey: the dataset mean colour, in [0, 1]
    grid: RegionGrid  # regions of this image
    attribution: np.ndarray | None = None  # (P,) clean region attribution, for saliency masks

    def fill_for(self, image: np.ndarray) -> np.ndarray:
        """The fill colour in the image's own dtype (uint8: as the quantised float fill)."""
        fill = np.asarray(self.fill, dtype=np.float32)
        return quantise(fill) if image.dtype == np.uint8 else fill


@dataclass(frozen=True)
class ParamRange:
    """The allowed values of one numeric perturbation parameter: ``lo <= x <= hi`` (``<`` where the
    bound is open; ``None`` = unbounded), finite, and a whole number when ``integer``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self, name: str) -> str:
        """E.g. ``0 < fraction <= 1``, ``an integer 1 <= tiles <= 256``, ``sigma >= 0``."""
        lo = None if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
        hi = None if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
        if lo is None and hi is None:
            text = f"{name} finite"
        elif lo is None:
            text = f"{name}{hi}"
        elif hi is None:
            text = f"{name} {'>' if self.lo_open else '>='} {self.lo:g}"
        else:
            text = f"{lo}{name}{hi}"
        return f"an integer {text}" if self.integer else text

    def check(self, kind: str, name: str, value) -> None:
        """One-line ``StcgError`` naming the bad value and the allowed range."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.integer:
            ok = float(value).is_integer()
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        if not ok:
            what = "is out of range" if isinstance(value, (int, float)) else "is not a number"
            raise StcgError(f"perturbation {kind}: {name}={value} {what}; allowed: {self.describe(name)}")


@dataclass(frozen=True)
class Perturbation:
    name: str
    fn: Callable[[Image, dict, np.random.Generator, PerturbationContext], Image]
    defaults: dict = field(default_factory=dict)
    needs_attribution: bool = False
    description: str = ""
    uint8: bool = False  # fn maps uint8 images exactly as it maps float ones, then quantised
    ranges: Mapping[str, ParamRange] = field(default_factory=dict)  # parameter -> allowed values

    def check_params(self, params: Mapping) -> None:
        """Refuse (one line) a parameter this perturbation does not take or a value outside its range."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise StcgError(
                f"perturbation {self.name!r} has no parameter {sorted(unknown)}; it takes {sorted(self.defaults)}"
            )
        for key, rng in self.ranges.items():
            if key in params:
                rng.check(self.name, key, params[key])


REGISTRY: dict[str, Perturbation] = {}


def register_perturbation(
    name: str,
    defaults: dict | None = None,
    needs_attribution: bool = False,
    uint8: bool = False,
    ranges: Mapping[str, ParamRange] | None = None,
):
    """Decorator: add ``fn(image, params, rng, ctx) -> image`` to the registry under ``name``.

    ``ranges`` maps parameter names (a subset of ``defaults``) to their ``ParamRange``; user values
    are checked against it before any model work. ``uint8=True`` promises that ``fn`` also takes
    (H, W, 3) uint8 images and returns exactly ``quantise(fn(image / 255))`` for them."""
    defaults, ranges = dict(defaults or {}), dict(ranges or {})
    if set(ranges) - set(defaults):
        raise ValueError(
            f"perturbation {name!r}: ranges for parameters without a default: {sorted(set(ranges) - set(defaults))}"
        )
    for key, rng in ranges.items():
        try:
            rng.check(name, key, defaults[key])
        except StcgError as e:  # a default outside its own range is a programming error
            raise ValueError(f"default of {e}") from None

    def deco(fn):
        REGISTRY[name] = Perturbation(
            name,
            fn,
            defaults,
            needs_attribution,
            (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            uint8,
            ranges,
        )
        return fn

    return deco


def get_perturbation(name: str) -> Perturbation:
    try:
        return REGISTRY[name]
    except KeyError:
        raise StcgError(f"unknown perturbation {name!r}; known: {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class PerturbationSpec:
    """A perturbation by name with its full parameter set (defaults filled in)."""

    kind: str
    params: dict

    @classmethod
    def make(cls, kind: str, **overrides) -> PerturbationSpec:
        p = get_perturbation(kind)
        p.check_params(overrides)
        return cls(kind, {**p.defaults, **overrides})

    def check(self) -> PerturbationSpec:
        """This spec, after checking its kind and every parameter against the registry (one-line errors)."""
        get_perturbation(self.kind).check_params(self.params)
        return self

    @property
    def needs_attribution(self) -> bool:
        return get_perturbation(self.kind).needs_attribution


DEFAULT_KINDS = (
    "center_mask",
    "peripheral_mask",
    "color_shift",
    "patch_shuffle",
    "saliency_patch_mask",
    "gaussian_noise",
)


def parse_perturbations(text: str | None) -> list[PerturbationSpec]:
    """``"all"`` / ``None`` -> the six defaults; else ``"kind[:k=v[;k=v]],kind,..."``."""
    if text is None or text.strip() in ("", "all"):
        return [PerturbationSpec.make(k) for k in DEFAULT_KINDS]
    specs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        kind, _, rest = part.partition(":")
        overrides = {}
        for kv in filter(None, rest.split(";")):
            k, eq, v = kv.partition("=")
            if not eq:
                raise StcgError(f"bad perturbation parameter {kv!r} in {part!r} (use name:key=value)")
            try:
                overrides[k.strip()] = float(v) if any(c in v for c in ".e") else int(v)
            except ValueError:
                overrides[k.strip()] = v.strip()
        specs.append(PerturbationSpec.make(kind.strip(), **overrides))
    if len({s.kind for s in specs}) != len(specs):
        raise StcgError("each perturbation kind may appear once")
    return specs


def apply_perturbation(
    spec: PerturbationSpec, image: Image, seed: int, example_key: str, ctx: PerturbationContext
) -> Image:
    """Run ``spec`` on ``image``; deterministic for (seed, example_key, kind).

    Float in [0, 1] -> float32 in [0, 1]; uint8 -> uint8, equal to ``quantise`` of the float result."""
    p = get_perturbation(spec.kind)
    if p.needs_attribution and ctx.attribution is None:
        raise ValueError(f"{spec.kind} needs the clean attribution")
    rng = rng_for(seed, example_key, spec.kind)
    if image.dtype == np.uint8:
        if p.uint8:
            out = p.fn(image, spec.params, rng, ctx)
            if out.dtype != np.uint8 or out.shape != image.shape:
                raise TypeError(
                    f"perturbation {spec.kind!r} (uint8=True) returned {out.dtype} {out.shape} for a uint8 image"
                )
            return out
        return quantise(np.clip(p.fn(to_float(image), spec.params, rng, ctx).astype(np.float32), 0.0, 1.0))
    out = p.fn(image, spec.params, rng, ctx)
    return np.clip(out.astype(np.float32), 0.0, 1.0)


# ------------------------------------------------------------------ helpers (pure)
def centre_box(h: int, w: int, fraction: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the central square of side ``fraction * min(h, w)`` (at least 1 px)."""
    side = max(1, int(round(fraction * min(h, w))))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return y0, y0 + side, x0, x0 + side


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(delta > 0, h / 6.0, 0.0)
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros_like(hsv)
    for k, c in enumerate(choices):
        out = np.where((i == k)[..., None], c, out)
    return out


# ------------------------------------------------------------------ the six kinds of the spec
FRACTION = ParamRange(0.0, 1.0, lo_open=True)  # a share of the image side / of the regions: 0 < f <= 1


@register_perturbation("center_mask", defaults={"fraction": 0.5}, uint8=True, ranges={"fraction": FRACTION})
def center_mask(image, params, rng, ctx):
    """Grey square (dataset mean colour) of side fraction x min(H, W) at the centre."""
    y0, y1, x0, x1 = centre_box(*image.shape[:2], params["fraction"])
    return fill_rect(image.copy(), y0, y1, x0, x1, ctx.fill_for(image))


@register_perturbation("peripheral_mask", defaults={"fraction": 0.5}, uint8=True, ranges={"fraction": FRACTION})
def peripheral_mask(image, params, rng, ctx):
    """Grey everything outside the central square of side fraction x min(H, W)."""
    h, w = image.shape[:2]
    out = fill_rect(np.empty_like(image), 0, h, 0, w, ctx.fill_for(image))
    y0, y1, x0, x1 = centre_box(h, w, params["fraction"])
    out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return out


@register_perturbation(
    "color_shift", defaults={"hue_shift": 0.5}, uint8=True, ranges={"hue_shift": ParamRange(-1.0, 1.0)}
)
def color_shift(image, params, rng, ctx):
    """HSV hue rotated by hue_shift (0.5 = 180 degrees); saturation and value kept."""
    if float(params["hue_shift"]) % 1.0 == 0.5:
        # the 180-degree rotation in closed form: each channel c -> max + min - c keeps V (max) and
        # S ((max - min) / max), swaps which channel is largest and smallest and mirrors the middle
        # one, i.e. hue + 0.5 (equal to the HSV round trip to float precision; tested). On 8-bit
        # values k / 255 it is exact integer arithmetic, so the uint8 path equals the float one.
        if image.dtype == np.uint8:  # torch's channel reductions on uint8 are 2x numpy's strided maximum
            x = torch.from_numpy(np.ascontiguousarray(image))
            return ((x.amax(-1, keepdim=True) - x) + x.amin(-1, keepdim=True)).numpy()  # min <= c <= max: no wrap
        r, g, b = image[..., 0], image[..., 1], image[..., 2]  # elementwise max/min: a reduce over 3 is slow
        mx, mn = np.maximum(np.maximum(r, g), b)[..., None], np.minimum(np.minimum(r, g), b)[..., None]
        return ((mx + mn) - image).astype(np.float32)
    hsv = rgb_to_hsv(to_float(image).astype(np.float64))
    hsv[..., 0] = (hsv[..., 0] + params["hue_shift"]) % 1.0
    out = hsv_to_rgb(hsv).astype(np.float32)
    return quantise(out) if image.dtype == np.uint8 else out


@register_perturbation(
    "patch_shuffle", defaults={"tiles": 4}, uint8=True, ranges={"tiles": ParamRange(1, 256, integer=True)}
)
def patch_shuffle(image, params, rng, ctx):
    """Image cut into a tiles x tiles grid, tiles permuted by the seeded RNG.

    Tiles have equal size (H // tiles, W // tiles); the few right/bottom pixels beyond the last
    whole tile stay in place.
    """
    n = int(params["tiles"])
    h, w = image.shape[:2]
    th, tw = h // n, w // n
    if th == 0 or tw == 0:
        return image.copy()
    perm = rng.permutation(n * n)
    while n > 1 and np.array_equal(perm, np.arange(n * n)):
        perm = rng.permutation(n * n)
    out = image.copy()
    for dst, src in enumerate(perm):
        dr, dc = divmod(dst, n)
        sr, sc = divmod(int(src), n)
        out[dr * th : (dr + 1) * th, dc * tw : (dc + 1) * tw] = image[sr * th : (sr + 1) * th, sc * tw : (sc + 1) * tw]
    return out


@register_perturbation(
    "saliency_patch_mask",
    defaults={"fraction": 0.1},
    needs_attribution=True,
    uint8=True,
    ranges={"fraction": FRACTION},
)
def saliency_patch_mask(image, params, rng, ctx):
    """Grey the top fraction of regions by clean attribution (region boxes in original pixels)."""
    return ctx.grid.fill_regions(image.copy(), top_fraction(ctx.attribution, params["fraction"]), ctx.fill_for(image))


@register_perturbation("gaussian_noise", defaults={"sigma": 0.1}, uint8=True, ranges={"sigma": ParamRange(0.0)})
def gaussian_noise(image, params, rng, ctx):
    """Additive N(0, sigma) noise on [0, 1] pixels, clipped.

    The draws come from a torch generator seeded by ``rng`` (2-3x faster than numpy's normal
    sampler); the arithmetic is float32 on [0, 1] pixels for float and uint8 images alike."""
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    x = torch.from_numpy(np.ascontiguousarray(image))
    x = x.to(torch.float32).div_(255.0) if image.dtype == np.uint8 else x
    noisy = torch.randn(image.shape, generator=gen, dtype=torch.float32).mul_(float(params["sigma"]))
    noisy.add_(x).clamp_(0.0, 1.0)
    if image.dtype == np.uint8:
        return noisy.mul_(255.0).round_().to(torch.uint8).numpy()
    return noisy.numpy()
