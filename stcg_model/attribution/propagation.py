"""Relevancy propagation through co-attention (Chefer, Gur, Wolf, ICCV 2021), as pure torch functions.

docs/spec.md section 6. Every map is batched: ``(B, q, k)`` with ``B`` examples, a query axis ``q``
and a key axis ``k``; heads are already reduced (``head_mean`` for rollout, ``grad_weighted``
for relevancy). Relevancy matrices start at identity (self, ``R_ss``) and zero (cross, ``R_sq``):

- a self-attention layer of modality ``s``:  ``R_ss += Abar R_ss`` and ``R_sq += Abar R_sq``;
- a cross-attention layer from ``s`` to ``q``: ``R_sq += norm(R_ss)^T Abar norm(R_qq)``, where
  ``norm(R)`` is ``R - I`` with each row scaled to sum 1 (rows that sum to 0 stay 0), plus ``I``.

In BLIP-2 the chain is: Q-Former (queries self-attend; queries cross-attend to the patches,
whose own relevancy stays the identity because the ViT is not in the chain) -> language-model
encoder self-attention over ``[query slots | question | </s>]`` -> decoder self-attention and
cross-attention per answer step. ``relevance_to_regions`` then maps token or step rows through
the query slots onto the patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def head_mean(A: torch.Tensor) -> torch.Tensor:
    """``(B, H, q, k) -> (B, q, k)``: the head mean of attention weights (rollout's ``Abar``)."""
    return A.mean(dim=1)


def grad_weighted(A: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(B, H, q, k) -> (B, q, k)``: ``mean_h (grad A * A)+`` (relevancy's and Grad-CAM's ``Abar``)."""
    return (grad * A).clamp(min=0).mean(dim=1)


def eye_like(B: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, n, n)`` identity with the dtype and device of ``like``."""
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(B, n, n).clone()


def residual_normalised(R: torch.Tensor) -> torch.Tensor:
    """``norm(R)``: ``R - I`` with rows scaled to sum 1 (all-zero rows stay 0), plus ``I``. ``(B, n, n)``."""
    eye = eye_like(R.shape[0], R.shape[-1], R)
    X = R - eye
    s = X.sum(dim=-1, keepdim=True)
    X = torch.where(s != 0, X / torch.where(s != 0, s, torch.ones_like(s)), torch.zeros_like(X))
    return X + eye


def self_rule(R_ss: torch.Tensor, R_sq: torch.Tensor | None, A: torch.Tensor):
    """One self-attention layer ``A`` (B, s, s): ``(R_ss + A R_ss, R_sq + A R_sq)``."""
    new_ss = R_ss + A @ R_ss
    new_sq = None if R_sq is None else R_sq + A @ R_sq
    return new_ss, new_sq


def cross_rule(R_ss: torch.Tensor, R_sq: torch.Tensor, R_qq: torch.Tensor | None, A: torch.Tensor) -> torch.Tensor:
    """One cross-attention layer ``A`` (B, s, q): ``R_sq + norm(R_ss)^T A norm(R_qq)`` (``R_qq``
    None means the identity, whose ``norm`` is the identity)."""
    left = residual_normalised(R_ss).transpose(-1, -2)
    right = A if R_qq is None else A @ residual_normalised(R_qq)
    return R_sq + left @ right


def qformer_relevance(self_maps: Sequence[torch.Tensor], cross_maps: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Query -> patch relevancy ``R_qi`` (B, Q, K) through the Q-Former.

    ``self_maps[l]`` (B, S, S) is layer ``l``'s self-attention over the Q-Former's ``S`` positions: the
    ``Q`` queries, then (InstructBLIP) the instruction's ``S - Q`` text tokens; ``cross_maps[l]`` (B, Q, K)
    the queries' cross-attention to the ``K`` image positions (CLS included), or None for a layer without
    one. In each layer self-attention comes first, as in ``Blip2QFormerLayer``. Text tokens do not
    cross-attend: the cross rule runs over all ``S`` positions with zero rows for them, so relevancy the
    queries passed to the text comes back to the queries through later self-attention layers. Only the
    queries' rows are returned (they are what the language model reads).
    """
    if len(self_maps) != len(cross_maps):
        raise ValueError("one self map and one (possibly None) cross map per Q-Former layer")
    first_cross = next(c for c in cross_maps if c is not None)
    B, Q, K = first_cross.shape
    S = self_maps[0].shape[-1]
    R_ss = eye_like(B, S, first_cross)
    R_si = first_cross.new_zeros(B, S, K)
    for A_self, A_cross in zip(self_maps, cross_maps):
        R_ss, R_si = self_rule(R_ss, R_si, A_self)
        if A_cross is not None:
            if S > Q:  # the text rows of the cross map: nothing
                A_cross = torch.cat([A_cross, A_cross.new_zeros(B, S - Q, K)], dim=1)
            R_si = cross_rule(R_ss, R_si, None, A_cross)
    return R_si[:, :Q]


def encoder_relevance(self_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Token -> token relevancy ``R_ee`` (B, L, L) through the encoder's self-attention layers."""
    B, L, _ = self_maps[0].shape
    R = eye_like(B, L, self_maps[0])
    for A in self_maps:
        R, _ = self_rule(R, None, A)
    return R


def decoder_relevance(
    self_maps: Sequence[torch.Tensor], cross_maps: Sequence[torch.Tensor], R_ee: torch.Tensor
) -> torch.Tensor:
    """Answer step -> encoder position relevancy ``R_de`` (B, T, L).

    Per decoder layer: causal self-attention ``self_maps[l]`` (B, T, T), then cross-attention
    ``cross_maps[l]`` (B, T, L) to the encoder, whose relevancy ``R_ee`` (B, L, L) is final.
    """
    if len(self_maps) != len(cross_maps):
        raise ValueError("one self map and one cross map per decoder layer")
    B, T, L = cross_maps[0].shape
    R_dd = eye_like(B, T, cross_maps[0])
    R_de = cross_maps[0].new_zeros(B, T, L)
    for A_self, A_cross in zip(self_maps, cross_maps):
        R_dd, R_de = self_rule(R_dd, R_de, A_self)
        R_de = cross_rule(R_dd, R_de, R_ee, A_cross)
    return R_de


def rows_normalised(X: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1 (negative entries clamped to 0 first); an all-zero row becomes uniform."""
    X = X.clamp(min=0)
    s = X.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(X, 1.0 / X.shape[-1])
    return torch.where(s > 0, X / torch.where(s > 0, s, torch.ones_like(s)), uniform)


def query_patch_map(R_qi: torch.Tensor) -> torch.Tensor:
    """The method's ``C`` (B, Q, P): the CLS column (position 0) dropped, rows renormalised."""
    return rows_normalised(R_qi[..., 1:])


def relevance_to_regions(R_rows: torch.Tensor, R_qp: torch.Tensor, slots=None) -> torch.Tensor:
    """``(B, n, L) x (B, Q, P) -> (B, n, P)``: ``X[i, p] = sum_k R[i, slot_k] R_qp[k, p]`` over the ``Q``
    image slots (their positions ``slots``; None: the first ``Q`` positions), rows renormalised. ``R_qp``
    is the query -> patch relevancy with the CLS column dropped and NOT renormalised (docs/spec.md
    section 6), or the identity for a family without a Q-Former."""
    Q = R_qp.shape[-2]
    first = slots is None or (len(slots) == Q and int(slots[0]) == 0 and int(slots[-1]) == Q - 1)
    cols = R_rows[..., :Q] if first else R_rows[..., torch.as_tensor(slots, device=R_rows.device)]
    return rows_normalised(cols @ R_qp)
