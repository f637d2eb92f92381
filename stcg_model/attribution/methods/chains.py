"""What the built-in methods share: layer means of traced maps, the section-2 arrays from a method's
``C``, the relevancy chain of ``Abar`` maps, per-step gradients and a traced forward with autograd from
the image embeddings up. The traced forward itself is the model family's (``ModelPasses.trace``); the
chain reads its ``Traced.kind``:

- ``encoder-decoder`` (T5): Q-Former self/cross -> encoder self -> decoder self/cross. Token rows come
  from the encoder relevancy, step rows from the decoder's.
- ``decoder-only`` (OPT, LLaVA): (Q-Former self/cross where there is one ->) causal self-attention over
  ``[prompt (with the image slots) | answer]``; token rows are prompt positions, step ``t`` is the row
  of the position that predicts answer token ``t`` (``L - 1 + t``), as in docs/stcg.md.

Rows reach the regions through the image slots (``Traced.slots``): through the Q-Former's query ->
patch relevancy, or, with no Q-Former (LLaVA), directly: slot ``k`` is region ``k`` (``C`` the identity).

The relevancy chains run in float64: ``R = I + Abar R`` with gradient-weighted ``Abar`` near 1e-5 (and
near 1e-30 on near-certain steps) loses its signal next to the identity in float32.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionBatch, region_from_steps
from stcg_model.families.registry import family_for
from stcg_model.families.traced import Traced
from stcg_model.maths import alignment as A


def layer_mean(maps) -> torch.Tensor:
    """(B, q, k): the mean over layers of head-mean weights."""
    return torch.stack([R.head_mean(m) for m in maps]).mean(0)


def raw_lm_maps(traced: Traced, batch: AttributionBatch, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``'s section-2 ``E`` (L, L) and ``D`` (T, L): head- and layer-mean raw attention."""
    L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
    if traced.kind == "encoder-decoder":
        E = layer_mean(traced.lm_self)[r, :L, :L]
        D = layer_mean(traced.dec_cross)[r, :T, :L]
    else:  # decoder-only: one causal self-attention over [slots | prompt | answer]
        full = layer_mean(traced.lm_self)[r]
        E, D = full[:L, :L], full[L - 1 : L - 1 + T, :L]
    return E.double().cpu().numpy(), D.double().cpu().numpy()


def cam_lm_maps(cam: torch.Tensor, batch: AttributionBatch, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``'s ``E`` (L, L) and ``D`` (T, L) read from a decoder-only map ``cam`` (B, N, N) over
    ``[prompt | answer]``, as ``raw_lm_maps`` reads the raw attention."""
    L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
    full = cam[r]
    return full[:L, :L].double().cpu().numpy(), full[L - 1 : L - 1 + T, :L].double().cpu().numpy()


def section2(C: np.ndarray, E: np.ndarray, D: np.ndarray, positions: np.ndarray, is_eos, slots=None):
    """``(C, W, S, region)`` of section 2 from a method's ``C`` and raw ``E``, ``D`` (``slots``: the image
    slots' positions; None: the first Q)."""
    W, _ = A.structural(E, C, positions, slots)
    S, _, _ = A.temporal(D, C, positions, slots)
    return C, W, S, region_from_steps(S, np.asarray(is_eos, dtype=bool))


def slots_of(traced: Traced, r: int) -> np.ndarray | None:
    """Row ``r``'s image-slot positions (None: the first Q)."""
    return None if traced.slots is None else traced.slots[r]


def identity_slots(traced: Traced) -> list[torch.Tensor]:
    """Per row the (Q_r, Q_r) identity: with no Q-Former, slot ``k`` is region ``k`` (rows of Qwen-VL at
    their own resolution have different ``Q_r``)."""
    return [R.eye_like(1, len(s), traced.lm_self[0])[0] for s in traced.slots]


def qformer_relevance(maps: Traced) -> torch.Tensor:
    """(B, Q, 1 + P) query -> image-position relevancy of per-layer ``Abar`` maps."""
    return R.qformer_relevance(maps.qformer_self, maps.qformer_cross)


def slot_region_relevance(maps: Traced) -> torch.Tensor | list[torch.Tensor]:
    """(B, Q, P) slot -> region relevancy (indexed by row: per row (Q_r, P_r)): the Q-Former's with the CLS column dropped, NOT renormalised
    (docs/spec.md section 6), or the identity with no Q-Former."""
    return qformer_relevance(maps)[..., 1:] if maps.has_qformer else identity_slots(maps)


def lm_relevance(maps: Traced) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The language model's relevancy: encoder (or causal self) ``(B, L, L)`` and, for T5, decoder ``(B, T, L)``."""
    enc = R.encoder_relevance(maps.lm_self)
    if maps.kind == "decoder-only":
        return enc, None  # causal self-attention: the same self rule
    # padding steps of shorter answers in a batch are not part of their row's decoder: zero them,
    # or the cross rule's norm(R_dd)^T would carry them into real steps (batched != one by one)
    step = maps.step_mask.to(enc.dtype)  # (B, T)
    both = step[:, :, None] * step[:, None, :]
    dself = [a * both.to(a.dtype) for a in maps.dec_self]
    dcross = [a * step[:, :, None].to(a.dtype) for a in maps.dec_cross]
    return enc, R.decoder_relevance(dself, dcross, enc)  # (B, T, L)


def token_step_rows(
    kind: str, enc_rel: torch.Tensor, dec_rel: torch.Tensor | None, batch: AttributionBatch, r: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ``r``'s relevancy rows of its question tokens (n, L) and answer steps (T, L)."""
    pos = torch.as_tensor(batch.token_positions[r], device=enc_rel.device, dtype=torch.long)
    L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
    if kind == "decoder-only":
        return enc_rel[r].index_select(0, pos), enc_rel[r, L - 1 : L - 1 + T]
    return enc_rel[r].index_select(0, pos), dec_rel[r, :T]


def maps_to_regions(maps: Traced, batch: AttributionBatch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per row: ``W`` (n, P) and ``S`` (T, P) through the relevancy chain of ``Abar`` maps."""
    R_qp = slot_region_relevance(maps)
    enc_rel, dec_rel = lm_relevance(maps)
    Ws, Ss = [], []
    for r in range(len(batch)):
        tok_rows, step_rows = token_step_rows(maps.kind, enc_rel, dec_rel, batch, r)
        slots = slots_of(maps, r)
        Ws.append(R.relevance_to_regions(tok_rows[None], R_qp[r][None], slots)[0].double().cpu().numpy())
        Ss.append(R.relevance_to_regions(step_rows[None], R_qp[r][None], slots)[0].double().cpu().numpy())
    return Ws, Ss


def propagated(abar: Traced, batch) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """``C`` (B, Q, P; indexed by row) and per-row ``W``, ``S`` through the relevancy chain of ``abar`` maps."""
    C = R.query_patch_map(qformer_relevance(abar)) if abar.has_qformer else identity_slots(abar)
    W, S = maps_to_regions(abar, batch)
    return C, W, S


def trace(fam, batch: AttributionBatch, pixel_values: torch.Tensor | None = None) -> Traced:
    """``fam.trace`` of the batch's rows on their answers (on ``pixel_values`` if given)."""
    pv = batch.pixel_values if pixel_values is None else pixel_values
    return fam.trace(batch.prompt_ids, batch.answers, pv)


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
    """While active, the vision tower (its family's ``vision_tower``) runs without autograd and its
    outputs (the image embeddings, and the hidden states a LLaVA projector reads) are leaves that
    require grad: the Q-Former and language-model graph is built from there, and the ViT's activations
    (most of the memory a backward would keep, docs/attribution.md) are never saved. No method needs
    gradients below the first traced map, so the maps' gradients are the same. The hooks are removed
    on exit, also on error."""
    vision = family_for(model).vision_tower(model)
    state = {}

    def before(module, args, kwargs):
        state["grad"] = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def after(module, args, kwargs, output):
        torch.set_grad_enabled(state.pop("grad", True))
        output.last_hidden_state = output.last_hidden_state.detach().requires_grad_(True)
        if isinstance(getattr(output, "pooler_output", None), torch.Tensor):  # Qwen's merged patch features
            output.pooler_output = output.pooler_output.detach().requires_grad_(True)
        if getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(
                None if h is None else h.detach().requires_grad_(True) for h in output.hidden_states
            )
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
        return trace(fam, batch, pv)
