"""What the built-in methods share: layer means of traced maps, the section-2 arrays from a method's
``C``, the relevancy chain of ``Abar`` maps, per-step gradients and a traced forward with autograd from
the image embeddings up.

The relevancy chains run in float64: ``R = I + Abar R`` with gradient-weighted ``Abar`` near 1e-5 (and
near 1e-30 on near-certain steps) loses its signal next to the identity in float32.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionBatch, region_from_steps
from stcg_model.attribution.families import Traced
from stcg_model.maths import alignment as A


def layer_mean(maps) -> torch.Tensor:
    """(B, q, k): the mean over layers of head-mean weights."""
    return torch.stack([R.head_mean(m) for m in maps]).mean(0)


def raw_lm_maps(fam, traced: Traced, batch: AttributionBatch, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``'s section-2 ``E`` (L, L) and ``D`` (T, L): head- and layer-mean raw attention."""
    L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
    if traced.dec_cross:
        E = layer_mean(traced.lm_self)[r, :L, :L]
        D = layer_mean(traced.dec_cross)[r, :T, :L]
    else:  # decoder-only: one causal self-attention over [slots | prompt | answer]
        full = layer_mean(traced.lm_self)[r]
        E, D = full[:L, :L], full[L - 1 : L - 1 + T, :L]
    return E.double().cpu().numpy(), D.double().cpu().numpy()


def section2(C: np.ndarray, E: np.ndarray, D: np.ndarray, positions: np.ndarray, is_eos):
    """``(C, W, S, region)`` of section 2 from a method's ``C`` and raw ``E``, ``D``."""
    W, _ = A.structural(E, C, positions)
    S, _, _ = A.temporal(D, C, positions)
    return C, W, S, region_from_steps(S, np.asarray(is_eos, dtype=bool))


def propagated(fam, abar: Traced, batch) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """``C`` (B, Q, P) and per-row ``W``, ``S`` through the relevancy chain of ``abar`` maps."""
    C = R.query_patch_map(fam.qformer_relevance(abar))
    W, S = fam.maps_to_regions(abar, batch)
    return C, W, S


def step_gradients(t: Traced, kind: str = "logit") -> list[list[torch.Tensor]]:
    """Per answer step ``t``: the gradient of ``sum over rows of target(y_t)`` (``Traced.target``: the
    answer token's pre-softmax logit, or its log p) w.r.t. every traced map (one backward per step
    across the whole batch; rows are independent, so each row's slice is that row's own gradient)."""
    maps = t.tensors()
    grads = []
    scores = t.target(kind)
    T = scores.shape[1]
    for step in range(T):
        target = (scores[:, step] * t.step_mask[:, step]).sum()
        if not target.requires_grad:
            grads.append([torch.zeros_like(m) for m in maps])
            continue
        g = torch.autograd.grad(target, maps, retain_graph=step < T - 1, allow_unused=True)
        grads.append([torch.zeros_like(m) if gi is None else gi for m, gi in zip(maps, g)])
    return grads


@contextmanager
def vision_as_leaf(model):
    """While active, the vision tower runs without autograd and its output (the image embeddings)
    is a leaf that requires grad: the Q-Former and language-model graph is built from there, and the
    ViT's activations (most of the memory a backward would keep, docs/attribution.md) are never
    saved. No method needs gradients below the Q-Former's maps, so the maps' gradients are the same.
    The hooks are removed on exit, also on error."""
    vision = model.vision_model
    state = {}

    def before(module, args, kwargs):
        state["grad"] = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def after(module, args, kwargs, output):
        torch.set_grad_enabled(state.pop("grad", True))
        output.last_hidden_state = output.last_hidden_state.detach().requires_grad_(True)
        return output

    handles = [
        vision.register_forward_pre_hook(before, with_kwargs=True),
        vision.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def traced_with_grad(fam, batch: AttributionBatch) -> Traced:
    """A traced forward with autograd on from the image embeddings up (``vision_as_leaf``), so the
    graph is built even for frozen weights."""
    pv = batch.pixel_values.detach().to(fam.lm.device, fam.lm.dtype)
    with torch.enable_grad(), vision_as_leaf(fam.model):
        return fam.trace(batch, pv)
