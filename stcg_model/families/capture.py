"""The one hook mechanism: named hook points, installed by context managers that always remove them.

A family names its hook points (``HookPoint``: modules + where the weights sit in their output; BLIP-2's
in ``stcg_model.families.blip2.points``). Two recorders read them, sharing ``attention_weights``:

* ``AttentionCapture`` (the STCG's arrays): each hook averages heads on the device and adds the
  selected layers into a float32 running sum, so memory does not grow with depth. A point only records
  while it is switched on with ``capture.recording(...)``; ``capture.pop(name)`` returns the layer
  aggregate ``(B, q, k)``.
* ``recorded_maps`` (the gradient methods' traced forward): every layer's ``(B, H, q, k)``, heads kept,
  left in the autograd graph.

Weights exist only where attention is computed eagerly. Models loaded by ``stcg_model.families.loading``
use ``CAPTURE_IMPL``: each attention module runs SDPA (fused, no weights) unless it is a selected
module of a point that is recording right now, which runs its model family's own eager attention
and returns the weights. So greedy decoding, the Q-Former's self-attention and unselected layers
pay nothing for capture. A model with plain ``eager`` attention works too; with ``sdpa`` the hooks
raise, because there are no weights to read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

CAPTURE_IMPL = "stcg_capture"
WANTS_WEIGHTS = "_stcg_wants_weights"


def _family_eager(module: nn.Module):
    """The eager attention function of the module's own modelling file (T5, BLIP-2, OPT, ...)."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        raise RuntimeError(f"{type(module).__name__} has no eager_attention_forward to capture weights with")
    return fn


def _additive_mask(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, is_causal: bool | None = None
):
    """The float mask eager attention adds, from an SDPA-style mask (boolean, or None when nothing
    is masked). None on a causal module with several queries means causal with SDPA's top-left
    alignment (query i sees keys 0..i), as ``sdpa_attention_forward`` does; with q == k, the only
    case the engine meets, that is the usual lower triangle."""
    if mask is not None and mask.dtype != torch.bool:
        return mask
    q, k = query.shape[-2], key.shape[-2]
    if mask is None:
        causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        if not (causal and q > 1):
            return None
        mask = torch.ones(q, k, dtype=torch.bool, device=query.device).tril()[None, None]
    return torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(
        ~mask, torch.finfo(query.dtype).min
    )


def capture_attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """``CAPTURE_IMPL``: eager (returns weights) for modules being recorded, SDPA for all others."""
    if getattr(module, WANTS_WEIGHTS, False):
        mask = _additive_mask(module, query, key, attention_mask, kwargs.get("is_causal"))
        return _family_eager(module)(module, query, key, value, mask, **kwargs)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_capture_attention() -> str:
    """Register ``CAPTURE_IMPL`` with transformers (idempotent). Masks are SDPA's (boolean, or None
    where nothing is masked, so the fused kernels stay available); the eager branch turns them into
    the additive float masks eager attention expects."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE_IMPL, capture_attention)
    AttentionMaskInterface.register(CAPTURE_IMPL, sdpa_mask)
    return CAPTURE_IMPL


HOOK_POINT_WORDS = {
    "qformer.cross": "Q-Former cross-attention",
    "lm.encoder.self": "encoder self-attention",
    "lm.decoder.cross": "decoder cross-attention",
    "lm.self": "language-model self-attention",
}


@dataclass(frozen=True)
class LayerSelection:
    """Which layers of a hook point are aggregated: ``"mean"`` (all), ``"last"``, or indices (mean).

    Indices count from 0 (negative: from the end) and apply to every hook point, so each must exist
    in every one of them (``check``)."""

    spec: str | tuple[int, ...] = "mean"

    @classmethod
    def parse(cls, text: str | Sequence[int] | LayerSelection) -> LayerSelection:
        """``"mean"``/``"all"``, ``"last"`` or ``"0,-1"``; one-line ``StcgError`` for anything else."""
        from stcg.errors import StcgError

        if isinstance(text, LayerSelection):
            return text
        if isinstance(text, str):
            t = text.strip().lower()
            if t in ("mean", "all", "last"):
                return cls("last" if t == "last" else "mean")
            try:
                indices = tuple(int(x) for x in t.split(",") if x.strip())
            except ValueError:
                indices = ()
            if not indices:
                raise StcgError(f"bad layer selection {text!r}: use mean, last, or comma-separated layer indices")
            return cls(indices)
        indices = tuple(int(x) for x in text)
        if not indices:
            raise StcgError("empty layer selection: use mean, last, or layer indices")
        return cls(indices)

    def check(self, counts: dict[str, int]) -> LayerSelection:
        """This selection if every index exists in every hook point (``hook_layer_counts``); else a
        one-line ``StcgError`` naming the index and the allowed range."""
        if isinstance(self.spec, str) or not counts:
            return self
        n = min(counts.values())
        bad = [i for i in self.spec if not -n <= i < n]
        if bad:
            from stcg.errors import StcgError

            has = ", ".join(f"{c} {HOOK_POINT_WORDS.get(k, k)}" for k, c in counts.items())
            raise StcgError(
                f"layer {bad[0]} is out of range for this model ({has} layers); use indices {-n}..{n - 1}, mean or last"
            )
        return self

    def select(self, n_layers: int) -> list[int]:
        if self.spec == "mean":
            return list(range(n_layers))
        if self.spec == "last":
            return [n_layers - 1]
        chosen = sorted({i % n_layers for i in self.spec if -n_layers <= i < n_layers})
        if not chosen:
            raise ValueError(f"layer selection {self.spec} is empty for {n_layers} layers")
        return chosen

    def describe(self) -> str:
        return self.spec if isinstance(self.spec, str) else ",".join(map(str, self.spec))


@dataclass(frozen=True)
class HookPoint:
    """A named family of attention modules and where their weights sit in the output tuple; a module
    may be None where a layer has no such attention (a Q-Former layer without cross-attention)."""

    name: str
    modules: tuple[nn.Module | None, ...]
    weights_index: int


def attention_weights(point: HookPoint, output) -> torch.Tensor:
    """The (B, H, q, k) weights in a hooked module's ``output``; one clear error when there are none
    (the model runs an attention implementation that returns no weights, e.g. ``sdpa``)."""
    weights = output[point.weights_index] if isinstance(output, tuple) and len(output) > point.weights_index else None
    if weights is None:
        raise RuntimeError(
            f"{point.name}: attention weights are None; load the model with stcg_model.families.loading.load_model "
            f"(attention {CAPTURE_IMPL!r}) or attn_implementation='eager'"
        )
    return weights


@contextmanager
def recorded_maps(points: Sequence[HookPoint]) -> Iterator[dict[str, list[torch.Tensor | None]]]:
    """Per point, every module's weights ``(B, H, q, k)`` from the forward pass run inside, heads kept and
    left in the autograd graph (``None`` where a module is None or did not run). Every module of the
    points returns weights while active (``WANTS_WEIGHTS``); hooks are removed on exit, also on error."""
    maps: dict[str, list[torch.Tensor | None]] = {p.name: [None] * len(p.modules) for p in points}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def keep(point: HookPoint, i: int):
        def hook(module, args, output):
            maps[point.name][i] = attention_weights(point, output)

        return hook

    try:
        for point in points:
            for i, m in enumerate(point.modules):
                if m is not None:
                    setattr(m, WANTS_WEIGHTS, True)
                    handles.append(m.register_forward_hook(keep(point, i)))
        yield maps
    finally:
        for h in handles:
            h.remove()
        for point in points:
            for m in point.modules:
                if m is not None:
                    setattr(m, WANTS_WEIGHTS, False)


class AttentionCapture:
    """Context manager: hooks on every point, removed on exit even when the body raises."""

    def __init__(self, points: dict[str, HookPoint], layers: LayerSelection | str = "mean"):
        self.points = points
        self.layers = LayerSelection.parse(layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._hooked: dict[str, list[nn.Module]] = {}
        self._active: set[str] = set()
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}

    # -- lifecycle
    def __enter__(self) -> AttentionCapture:
        for point in self.points.values():
            selected = set(self.layers.select(len(point.modules)))
            for i, module in enumerate(point.modules):
                if i in selected:
                    self._handles.append(module.register_forward_hook(self._make_hook(point)))
                    self._hooked.setdefault(point.name, []).append(module)
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for modules in self._hooked.values():
            for m in modules:
                setattr(m, WANTS_WEIGHTS, False)
        self._hooked.clear()
        self._active.clear()

    @property
    def installed(self) -> int:
        return len(self._handles)

    # -- recording
    @contextmanager
    def recording(self, *names: str) -> Iterator[AttentionCapture]:
        unknown = set(names) - set(self.points)
        if unknown:
            raise KeyError(f"unknown hook points {sorted(unknown)}; have {sorted(self.points)}")
        for n in names:
            self._sum.pop(n, None)
            self._count[n] = 0
        self._active |= set(names)
        self._want(names, True)
        try:
            yield self
        finally:
            self._active -= set(names)
            self._want(names, False)

    def _want(self, names, on: bool) -> None:
        """Switch the selected modules of ``names`` to weight-returning attention (``CAPTURE_IMPL``)."""
        for n in names:
            for m in self._hooked.get(n, ()):
                setattr(m, WANTS_WEIGHTS, on)

    def pop(self, name: str) -> torch.Tensor:
        """(B, q, k) float32 mean over the selected layers of the last recording of ``name``."""
        if not self._count.get(name):
            raise RuntimeError(f"hook point {name!r} recorded nothing")
        out = self._sum.pop(name) / self._count.pop(name)
        return out

    def _make_hook(self, point: HookPoint):
        def hook(module, args, output):
            if point.name not in self._active:
                return
            w = attention_weights(point, output).detach().float().mean(1)  # heads averaged on the device
            if point.name in self._sum:
                self._sum[point.name] += w
            else:
                self._sum[point.name] = w.clone()
            self._count[point.name] += 1

        return hook
