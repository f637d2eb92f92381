"""An independent reference for the attribution methods of docs/spec.md section 6 (tests only).

Written from the spec, not from ``stcg_model.attribution``: its own attention function (registered
with transformers' ``AttentionInterface``) computes every attention map of a copy of the model,
records it with heads kept and, for finite differences, adds a chosen perturbation to the softmax
output before it multiplies ``V``. Each example runs alone (batch of one), in float64 arithmetic for
the relevancy rules, with gradients from ``torch.autograd.grad``.

Relevancy rules (docs/spec.md section 6; Chefer, Gur, Wolf 2021): relevancy matrices start at identity
(self) and zero (cross); a self-attention layer of modality s does ``R_ss += Abar R_ss`` and
``R_sq += Abar R_sq``; a cross-attention layer from s to q does
``R_sq += norm(R_ss)^T Abar norm(R_qq)`` with ``norm(R)`` = row-normalised ``R - I`` (a zero row
stays zero), plus ``I``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

REF_IMPL = "stcg_test_reference"


class _Tap:
    """Which modules to record (id -> key), what was recorded, and optional additive perturbations."""

    def __init__(self) -> None:
        self.keys: dict[int, tuple[str, int]] = {}
        self.maps: dict[tuple[str, int], torch.Tensor] = {}
        self.delta: dict[tuple[str, int], torch.Tensor] = {}


TAP = _Tap()


def reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None, **kw):
    """Plain softmax attention (every family this project uses: BLIP-2 Q-Former/ViT, T5, OPT, Llama, Qwen2)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention (Qwen): each key/value head serves several
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1)
    k = TAP.keys.get(id(module))
    if k is not None:
        if k in TAP.delta:
            weights = weights + TAP.delta[k]
        TAP.maps[k] = weights
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(REF_IMPL, reference_attention)
    AttentionMaskInterface.register(REF_IMPL, eager_mask)


def attention_modules(model) -> dict[tuple[str, int], torch.nn.Module]:
    """Every attention module on the image -> answer path, by (kind, layer).

    kinds: ``qs`` Q-Former self, ``qc`` Q-Former cross, ``es`` T5 encoder self, ``ds`` T5 decoder
    self, ``dc`` T5 decoder cross, ``ls`` decoder-only (OPT, LLaVA's Llama) self-attention."""
    out = {}
    if not hasattr(model, "qformer"):  # LLaVA: the projected patches go straight into the language model
        for i, layer in enumerate(model.model.language_model.layers):
            out[("ls", i)] = layer.self_attn
        return out
    for i, layer in enumerate(model.qformer.encoder.layer):
        out[("qs", i)] = layer.attention.attention
        if layer.has_cross_attention:
            out[("qc", i)] = layer.crossattention.attention
    lmod = model.language_model
    if model.config.text_config.is_encoder_decoder:
        for i, block in enumerate(lmod.encoder.block):
            out[("es", i)] = block.layer[0].SelfAttention
        for i, block in enumerate(lmod.decoder.block):
            out[("ds", i)] = block.layer[0].SelfAttention
            out[("dc", i)] = block.layer[1].EncDecAttention
    else:  # OPT (BLIP-2) keeps its layers under model.decoder, Llama (InstructBLIP's Vicuna) under model
        layers = lmod.model.decoder.layers if hasattr(lmod.model, "decoder") else lmod.model.layers
        for i, layer in enumerate(layers):
            out[("ls", i)] = layer.self_attn
    return out


def exact_rms_norms(model) -> None:
    """T5's RMS norm computes its variance in float32 whatever the model's dtype; in a float64 copy
    that float32 rounding (~1e-7) would swamp finite differences. Give every one the model's dtype."""

    def exact(module):
        def fwd(h):
            return module.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))

        return fwd

    for m in model.modules():
        if type(m).__name__ == "T5LayerNorm":
            m.forward = exact(m)


def reference_copy(model, dtype: torch.dtype = torch.float32):
    """A deep copy of ``model`` running ``reference_attention`` everywhere (the original is untouched);
    in float64 the whole forward is float64 (``exact_rms_norms``)."""
    _register()
    ref = copy.deepcopy(model).to(dtype).eval()
    ref.set_attn_implementation(REF_IMPL)
    if dtype == torch.float64:
        exact_rms_norms(ref)
    return ref


@dataclass
class Forward:
    """One example's teacher-forced pass: per-step log p (T,), the answer tokens' pre-softmax logits
    (T,) and the recorded maps (1, H, q, k)."""

    logp: torch.Tensor
    maps: dict[tuple[str, int], torch.Tensor]
    L: int  # prompt length (query slots included)
    logit: torch.Tensor | None = None

    def target(self, kind: str) -> torch.Tensor:
        """What a gradient method differentiates (docs/spec.md section 6): the logits, or log p."""
        return {"logit": self.logit, "logp": self.logp}[kind]


def forward(
    ref,
    pixel_values: torch.Tensor,
    prompt_ids: Sequence[int],
    answer: Sequence[int],
    delta=None,
    qformer_ids: Sequence[int] | None = None,
) -> Forward:
    """Teacher-forced forward on ``answer`` through the model: ONE prompt and answer for every image row of
    ``pixel_values`` (no padding); ``logp`` is (T,) for one image, else (N, T). ``qformer_ids``: the
    instruction InstructBLIP's Q-Former reads."""
    cfg = ref.config.text_config
    dtype = next(ref.parameters()).dtype
    mods = attention_modules(ref)
    TAP.keys = {id(m): k for k, m in mods.items()}
    TAP.maps = {}
    TAP.delta = dict(delta or {})
    pv = pixel_values.to(dtype)
    N, L, T = pv.shape[0], len(prompt_ids), len(answer)
    extra = {} if qformer_ids is None else {"qformer_input_ids": torch.tensor([list(qformer_ids)] * N)}
    if hasattr(
        getattr(ref, "model", None), "visual"
    ):  # Qwen-VL: rows of patches, and M-RoPE from the ids; the image's grid is the row's (t, h, w)
        # when its prompt ids carry one (each image at its own resolution), else one square image
        if hasattr(prompt_ids, "grid_thw"):
            t, h, w = prompt_ids.grid_thw
        else:
            t, h, w = 1, int(round(pv.shape[1] ** 0.5)), int(round(pv.shape[1] ** 0.5))
        extra["image_grid_thw"] = torch.tensor([[t, h, w]] * N)
        pv = pv[:, : t * h * w].reshape(-1, pv.shape[-1])  # a row's real patches (batches pad them)
    try:
        if cfg.is_encoder_decoder:
            start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else cfg.pad_token_id
            out = ref(
                pixel_values=pv,
                input_ids=torch.tensor([list(prompt_ids)] * N),
                attention_mask=torch.ones(N, L, dtype=torch.long),
                decoder_input_ids=torch.tensor([[start, *answer[:-1]]] * N),
                **extra,
            )
            logits = out.logits
        else:
            ids = [*prompt_ids, *answer[:-1]]
            if "image_grid_thw" in extra:  # the model numbers its positions from where the image tokens are
                extra["mm_token_type_ids"] = (torch.tensor([ids] * N) == ref.config.image_token_id).long()
            out = ref(
                pixel_values=pv,
                input_ids=torch.tensor([ids] * N),
                attention_mask=torch.ones(N, len(ids), dtype=torch.long),
                **extra,
            )
            logits = out.logits[:, L - 1 : L - 1 + T]
        logp = logits.log_softmax(-1)[:, torch.arange(T), torch.tensor(list(answer))]
        logit = logits[:, torch.arange(T), torch.tensor(list(answer))]
        return Forward(logp[0] if N == 1 else logp, dict(TAP.maps), L, logit[0] if N == 1 else logit)
    finally:
        TAP.keys, TAP.maps, TAP.delta = {}, {}, {}


# ----------------------------------------------------------------------------- relevancy rules
def norm_residual(R: np.ndarray) -> np.ndarray:
    """``norm(R)``: rows of ``R - I`` scaled to sum 1 (zero rows stay zero), plus ``I``."""
    eye = np.eye(R.shape[-1])
    X = R - eye
    s = X.sum(-1, keepdims=True)
    X = np.divide(X, s, out=np.zeros_like(X), where=np.abs(s) > 1e-30)
    return X + eye


def rows_normalised(x: np.ndarray) -> np.ndarray:
    """Clamped at 0, rows summing to 1; an all-zero row becomes uniform. Relevancy has no natural
    scale (``Abar`` is as small as the gradients), so only an exactly zero row counts as zero."""
    x = np.clip(x, 0, None)
    s = x.sum(-1, keepdims=True)
    return np.where(s > 0, x / np.where(s > 0, s, 1.0), 1.0 / x.shape[-1])


def chain(abar: dict[tuple[str, int], np.ndarray], family: str, L: int, T: int):
    """The relevancy chain of per-layer ``Abar`` (q, k) maps (float64).

    Returns ``R_qi`` (Q, 1+P) and the language-model relevancy ``R_lm``: T5 -> (``R_enc`` (L, L),
    ``R_dec`` (T, L)); OPT -> (``R`` (N, N), None); LLaVA (no Q-Former) -> (None, ``R`` (N, N), None)."""
    if family == "llava":
        N = abar[("ls", 0)].shape[0]
        R = np.eye(N)
        for i in range(sum(1 for kind, _ in abar if kind == "ls")):
            R = R + abar[("ls", i)] @ R
        return None, R, None
    nq = max(i for kind, i in abar if kind == "qs") + 1
    S = abar[("qs", 0)].shape[0]  # Q-Former positions: the queries, then InstructBLIP's instruction tokens
    Q, K = next(v for (kind, _), v in abar.items() if kind == "qc").shape
    R_ss, R_si, R_ii = np.eye(S), np.zeros((S, K)), np.eye(K)
    for i in range(nq):
        A = abar[("qs", i)]
        R_ss, R_si = R_ss + A @ R_ss, R_si + A @ R_si
        if ("qc", i) in abar:  # only the queries cross-attend: the sum over s runs over the Q query rows
            R_si = R_si + norm_residual(R_ss)[:Q].T @ abar[("qc", i)] @ norm_residual(R_ii)
    R_qi = R_si[:Q]
    if family == "t5":
        n_enc = sum(1 for kind, _ in abar if kind == "es")
        n_dec = sum(1 for kind, _ in abar if kind == "ds")
        R_ee = np.eye(L)
        for i in range(n_enc):
            R_ee = R_ee + abar[("es", i)] @ R_ee
        R_tt, R_te = np.eye(T), np.zeros((T, L))
        for i in range(n_dec):
            A = abar[("ds", i)]
            R_tt, R_te = R_tt + A @ R_tt, R_te + A @ R_te
            R_te = R_te + norm_residual(R_tt).T @ abar[("dc", i)] @ norm_residual(R_ee)
        return R_qi, R_ee, R_te
    n = sum(1 for kind, _ in abar if kind == "ls")
    N = abar[("ls", 0)].shape[0]
    R = np.eye(N)
    for i in range(n):
        R = R + abar[("ls", i)] @ R
    return R_qi, R, None


def maps_from_chain(R_qi, R_a, R_b, family: str, Q: int, L: int, positions, T: int, slots=None):
    """``C`` (Q, P), ``W`` (n, P), ``S`` (T, P) from one chain (CLS column of ``R_qi`` dropped). LLaVA:
    slot ``k`` (at position ``slots[k]``) is patch ``k``, so ``C`` is the identity."""
    if family == "llava":
        positions, slots = np.asarray(positions), np.asarray(slots)
        W = rows_normalised(R_a[np.ix_(positions, slots)])
        S = rows_normalised(R_a[np.ix_(L - 1 + np.arange(T), slots)])
        return np.eye(len(slots)), W, S
    R_qp = R_qi[:, 1:]
    C = rows_normalised(R_qp)
    positions = np.asarray(positions)
    if family == "t5":
        W = rows_normalised(R_a[positions, :Q] @ R_qp)
        S = rows_normalised(R_b[:, :Q] @ R_qp)
    else:
        W = rows_normalised(R_a[positions, :Q] @ R_qp)
        S = rows_normalised(R_a[L - 1 + np.arange(T), :Q] @ R_qp)
    return C, W, S


def region_from(S: np.ndarray, is_eos: np.ndarray) -> np.ndarray:
    """The mean of ``S`` over content (non-``</s>``) steps, all steps when the answer is only ``</s>``."""
    rows = S[~is_eos] if (~is_eos).any() else S
    return rows.mean(0)


def _abar(maps, grads=None) -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for k, A in maps.items():
        A64 = A.detach().double()[0]
        if grads is None:
            out[k] = A64.mean(0).numpy()
        else:
            out[k] = (grads[k].detach().double()[0] * A64).clamp(min=0).mean(0).numpy()
    return out


def _grads(fw: Forward, target: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    keys = list(fw.maps)
    gs = torch.autograd.grad(target, [fw.maps[k] for k in keys], retain_graph=True, allow_unused=True)
    return {k: (torch.zeros_like(fw.maps[k]) if g is None else g) for k, g in zip(keys, gs)}


def reference_maps(
    ref, method: str, pixel_values, prompt_ids, answer, positions, is_eos, Q: int, target: str = "logit"
) -> dict[str, np.ndarray]:
    """``C``, ``W``, ``S``, ``region`` of ``rollout`` or ``relevancy`` for ONE example (docs/spec.md section 6);
    relevancy's gradients are of ``target``: the answer tokens' logits (the method) or log p
    (``relevancy_logp``)."""
    qformer_ids = getattr(prompt_ids, "qformer_ids", None)  # InstructBLIP's instruction, if the row has one
    row_ids = prompt_ids  # as given: a Qwen-VL row's ids carry its image's grid (``grid_thw``)
    prompt_ids = list(prompt_ids)
    if not hasattr(ref, "qformer"):
        family = "llava"
    else:
        family = "t5" if ref.config.text_config.is_encoder_decoder else "opt"
    slots = np.flatnonzero(np.asarray(prompt_ids) == ref.config.image_token_id)
    T = len(answer)
    with torch.enable_grad():
        fw = forward(ref, pixel_values, row_ids, answer, qformer_ids=qformer_ids)
        L = fw.L
        if method == "rollout":
            C, W, S = maps_from_chain(*chain(_abar(fw.maps), family, L, T), family, Q, L, positions, T, slots)
        elif method == "relevancy":
            whole = _abar(fw.maps, _grads(fw, fw.target(target).sum()))
            C, W, _ = maps_from_chain(*chain(whole, family, L, T), family, Q, L, positions, T, slots)
            S = np.zeros((T, C.shape[1]))
            for t in range(T):
                step = _abar(fw.maps, _grads(fw, fw.target(target)[t]))
                S[t] = maps_from_chain(*chain(step, family, L, T), family, Q, L, positions, T, slots)[2][t]
        else:
            raise ValueError(method)
    return {"C": C, "W": W, "S": S, "region": region_from(S, np.asarray(is_eos))}


def finite_difference(
    ref,
    pixel_values,
    prompt_ids,
    answer,
    key: tuple[str, int],
    index: tuple[int, ...],
    h: float,
    target: Callable,
    like: torch.Tensor,
) -> float:
    """Central difference of ``target(logp)`` when ``h`` is added to one attention weight (after the
    softmax, before it multiplies ``V``) of the map ``key``, whose shape and dtype ``like`` has."""
    vals = []
    for sign in (1.0, -1.0):
        d = torch.zeros_like(like)
        d[index] = sign * h
        with torch.no_grad():
            vals.append(float(target(forward(ref, pixel_values, prompt_ids, answer, {key: d}).logp)))
    return (vals[0] - vals[1]) / (2 * h)
