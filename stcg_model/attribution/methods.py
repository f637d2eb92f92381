"""The built-in attribution methods (docs/spec.md section 6): attention, rollout, relevancy, gradcam, occlusion.

The relevancy chains run in float64: `R = I + Abar R` with gradient-weighted `Abar` near 1e-5 (and
near 1e-30 on near-certain steps) loses its signal next to the identity in float32.

Each is a small class registered by name; what they share (the traced forward pass, the
relevancy chain, region attribution from ``S``) lives in ``families`` and ``propagation``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from stcg.images import quantise
from stcg_model import alignment as A
from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import (
    AttributionBatch,
    AttributionMethod,
    MethodMaps,
    normalised,
    region_from_steps,
    register_attribution,
)
from stcg_model.attribution.families import Traced, family_for


def _mean(maps) -> torch.Tensor:
    """(B, q, k): the mean over layers of head-mean weights."""
    return torch.stack([R.head_mean(m) for m in maps]).mean(0)


def _raw_lm_maps(fam, traced: Traced, batch: AttributionBatch, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``'s section-2 ``E`` (L, L) and ``D`` (T, L): head- and layer-mean raw attention."""
    L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
    if traced.dec_cross:
        E = _mean(traced.lm_self)[r, :L, :L]
        D = _mean(traced.dec_cross)[r, :T, :L]
    else:  # decoder-only: one causal self-attention over [slots | prompt | answer]
        full = _mean(traced.lm_self)[r]
        E, D = full[:L, :L], full[L - 1 : L - 1 + T, :L]
    return E.double().cpu().numpy(), D.double().cpu().numpy()


def _section2(C: np.ndarray, E: np.ndarray, D: np.ndarray, positions: np.ndarray, is_eos):
    """``(C, W, S, region)`` of section 2 from a method's ``C`` and raw ``E``, ``D``."""
    W, _ = A.structural(E, C, positions)
    S, _, _ = A.temporal(D, C, positions)
    return C, W, S, region_from_steps(S, np.asarray(is_eos, dtype=bool))


@register_attribution
class Attention(AttributionMethod):
    """Raw attention (section 2): head- and layer-mean maps through ``W = a C`` and ``S = b C``.

    The engine's own arrays are this method's values in ingestion and ``stcg explain``; computed
    standalone it equals them to float precision (all layers, ``--layers mean``)."""

    name = "attention"
    description = "raw attention (head and layer mean), section 2"

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm)
        t = fam.trace(batch)
        cross = _mean([c for c in t.qformer_cross if c is not None])
        out = []
        for r in range(len(batch)):
            C = A.query_region_attention(cross[r].double().cpu().numpy())
            E, D = _raw_lm_maps(fam, t, batch, r)
            C, W, S, region = _section2(C, E, D, batch.token_positions[r], batch.is_eos[r])
            out.append(MethodMaps(self.name, region, C, W, S))
        return out


def _propagated(fam, abar: Traced, batch) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """``C`` (B, Q, P) and per-row ``W``, ``S`` through the relevancy chain of ``abar`` maps."""
    C = R.query_patch_map(fam.qformer_relevance(abar))
    W, S = fam.maps_to_regions(abar, batch)
    return C, W, S


@register_attribution
class Rollout(AttributionMethod):
    """Attention rollout extended to co-attention (Abnar & Zuidema 2020; Chefer et al. 2021's rules
    with ``Abar = mean_h A``). Gradient-free."""

    name = "rollout"
    description = "relevancy rules with Abar = head-mean attention (no gradients)"

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm)
        t = fam.trace(batch)
        abar = t.rebuild([R.head_mean(m.double()) for m in t.tensors()])
        C, W, S = _propagated(fam, abar, batch)
        return [
            MethodMaps(self.name, region_from_steps(S[r], batch.is_eos[r]), C[r].double().cpu().numpy(), W[r], S[r])
            for r in range(len(batch))
        ]


def _step_gradients(t: Traced, kind: str = "logit") -> list[list[torch.Tensor]]:
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
def _vision_as_leaf(model):
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


def _traced_with_grad(fam, batch: AttributionBatch) -> Traced:
    """A traced forward with autograd on from the image embeddings up (``_vision_as_leaf``), so the
    graph is built even for frozen weights."""
    pv = batch.pixel_values.detach().to(fam.lm.device, fam.lm.dtype)
    with torch.enable_grad(), _vision_as_leaf(fam.model):
        return fam.trace(batch, pv)


@register_attribution
class Relevancy(AttributionMethod):
    """Chefer, Gur, Wolf (ICCV 2021): gradient-weighted relevancy, ``Abar = mean_h (grad A * A)+``.

    The gradient is of the answer token's pre-softmax logit, as the reference code backpropagates a
    one-hot of the output logits (docs/spec.md section 6; ``relevancy_logp`` takes log p instead). ``W`` and
    ``C`` use the sum over the answer's tokens; row ``t`` of ``S`` token ``t``'s alone. One backward
    per answer step over the whole batch."""

    name = "relevancy"
    needs_gradients = True
    target = "logit"
    description = "gradient-weighted relevancy propagation (Chefer et al. 2021), target: the answer logit"

    def compute(self, lm, batch):
        fam = family_for(lm)
        with torch.enable_grad():  # callers (the engine) may run under no_grad
            t = _traced_with_grad(fam, batch)
            maps = [m.detach().double() for m in t.tensors()]
            per_step = _step_gradients(t, self.target)
        with torch.no_grad():
            total = [sum(g[i] for g in per_step).double() for i in range(len(maps))]
            abar_all = t.rebuild([R.grad_weighted(m, g) for m, g in zip(maps, total)])
            C, W, _ = _propagated(fam, abar_all, batch)
            S_rows = [[None] * len(a) for a in batch.answers]
            for step, grads in enumerate(per_step):
                abar = t.rebuild([R.grad_weighted(m, g.double()) for m, g in zip(maps, grads)])
                _, _, S_step = _propagated(fam, abar, batch)
                for r, a in enumerate(batch.answers):
                    if step < len(a):
                        S_rows[r][step] = S_step[r][step]
        out = []
        for r in range(len(batch)):
            S = np.stack(S_rows[r])
            out.append(
                MethodMaps(self.name, region_from_steps(S, batch.is_eos[r]), C[r].double().cpu().numpy(), W[r], S)
            )
        return out


@register_attribution
class GradCAM(AttributionMethod):
    """Grad-CAM on the Q-Former cross-attention (BLIP's ITM recipe): ``C = mean over layers of
    mean_h (grad A * A)+`` for the gradient of the answer tokens' summed pre-softmax logits (the class
    score before the softmax, as Grad-CAM takes it; ``gradcam_logp`` takes log p(answer)), CLS
    dropped, rows renormalised; ``W`` and ``S`` from it with the raw attention of section 2."""

    name = "gradcam"
    needs_gradients = True
    target = "logit"
    description = "Grad-CAM on the Q-Former cross-attention, target: the answer logit"

    def compute(self, lm, batch):
        fam = family_for(lm)
        with torch.enable_grad():  # callers (the engine) may run under no_grad
            t = _traced_with_grad(fam, batch)
            cross = [c for c in t.qformer_cross if c is not None]
            score = (t.target(self.target) * t.step_mask).sum()
            grads = torch.autograd.grad(score, cross, allow_unused=True)
        with torch.no_grad():
            cams = [
                R.grad_weighted(c.double(), torch.zeros_like(c, dtype=torch.float64) if g is None else g.double())
                for c, g in zip(cross, grads)
            ]
            C_all = R.rows_normalised(torch.stack(cams).mean(0)[..., 1:])
            out = []
            for r in range(len(batch)):
                C = C_all[r].double().cpu().numpy()
                E, D = _raw_lm_maps(fam, t, batch, r)
                C, W, S, region = _section2(C, E, D, batch.token_positions[r], batch.is_eos[r])
                out.append(MethodMaps(self.name, region, C, W, S))
        return out


def occlusion_block_side(grid: int, max_blocks: int = 64) -> int:
    """The smallest block side ``b`` (in patches) giving at most ``max_blocks`` blocks on a G x G grid."""
    b = 1
    while math.ceil(grid / b) ** 2 > max_blocks:
        b += 1
    return b


def occlusion_blocks(grid: int, b: int) -> list[np.ndarray]:
    """Region indices of each b x b block of a G x G grid (row-major; edge blocks may be smaller)."""
    blocks = []
    for r0 in range(0, grid, b):
        for c0 in range(0, grid, b):
            rows, cols = np.meshgrid(np.arange(r0, min(r0 + b, grid)), np.arange(c0, min(c0 + b, grid)), indexing="ij")
            blocks.append((rows * grid + cols).ravel())
    return blocks


@register_attribution
class Occlusion(AttributionMethod):
    """The perturbation reference: ``a[p] = (p(y|I) - p(y|I with p's block greyed))+``, normalised;
    ``S[t]`` from each step's log-probability drop. Region-level only: no ``C``, no ``W``.

    Log-probabilities are float64 and the drop is taken from their difference, so the drops of a
    near-certain answer (p = 1 - 1e-7, drops of 1e-9) are not rounded away."""

    name = "occlusion"
    description = "occlusion of b x b patch blocks (at most 64 blocks), region-level only"
    max_blocks = 64
    chunk_rows = 64

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm)
        clean = fam.answer_logprobs(batch, batch.pixel_values)
        fill = quantise(np.asarray(batch.fill, dtype=np.float32))
        jobs = []  # (row, block regions)
        images = []
        for r, (img, grid) in enumerate(zip(batch.images, batch.grids)):
            b = occlusion_block_side(grid.grid, self.max_blocks)
            for block in occlusion_blocks(grid.grid, b):
                jobs.append((r, block))
                images.append(grid.fill_regions(img.copy(), block, fill))
        logps: list[np.ndarray] = []
        for s in range(0, len(jobs), self.chunk_rows):
            rows = [r for r, _ in jobs[s : s + self.chunk_rows]]
            sub = subset_batch(batch, rows)
            logps.extend(fam.answer_logprobs(sub, batch.to_pixels(images[s : s + self.chunk_rows])))
        out = []
        for r in range(len(batch)):
            P = batch.grids[r].num_regions
            T = len(batch.answers[r])
            drop_p = np.zeros(P)
            drop_step = np.zeros((T, P))
            lp_clean = float(clean[r].astype(np.float64).sum())
            for (jr, block), lp in zip(jobs, logps):
                if jr != r:
                    continue
                # p - p' = -p expm1(log p' - log p): exact where both round to 1 (a drop of 1e-9 survives)
                drop_p[block] = max(
                    0.0, -math.exp(lp_clean) * math.expm1(float(lp.astype(np.float64).sum()) - lp_clean)
                )
                drop_step[:, block] = np.clip(clean[r].astype(np.float64) - lp.astype(np.float64), 0.0, None)[:, None]
            out.append(MethodMaps(self.name, normalised(drop_p), None, None, normalised(drop_step)))
        return out


@register_attribution
class RelevancyLogp(Relevancy):
    """``relevancy`` with the gradient of log p(answer token) instead of its logit (the target before
    issue 23; it vanishes as p -> 1). An option: not part of ``--attributions all``."""

    name = "relevancy_logp"
    target = "logp"
    in_all = False
    description = "relevancy with log p as the gradient target (option)"


@register_attribution
class GradCAMLogp(GradCAM):
    """``gradcam`` with the gradient of log p(answer) instead of the answer logits. An option: not
    part of ``--attributions all``."""

    name = "gradcam_logp"
    target = "logp"
    in_all = False
    description = "Grad-CAM with log p as the gradient target (option)"


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


def compute_methods(lm, batch: AttributionBatch, names) -> dict[str, list[MethodMaps]]:
    """``{method: per-row MethodMaps}`` for each name (see ``base.parse_attributions``)."""
    from stcg_model.attribution.base import get_attribution

    return {n: get_attribution(n).compute(lm, batch) for n in names}
