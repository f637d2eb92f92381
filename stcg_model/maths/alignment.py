"""The STCG quantities of docs/spec.md section 2, as pure numpy functions.

Shapes: ``Q`` image slots, ``P`` regions, ``n`` question tokens, ``L`` prompt positions (BLIP-2's T5:
``[query slots | question tokens | </s>]``), ``T`` answer steps. ``slots`` (Q,) are the positions of
the image slots among the ``L`` (default: the first ``Q``; LLaVA's sit inside its chat template). All
attention inputs are already averaged over heads and aggregated over layers.
"""

from __future__ import annotations

import numpy as np

from stcg_model.maths.regions import as_shape

EPS = 1e-12


def renormalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1 (rows of zeros stay zero)."""
    s = x.sum(-1, keepdims=True)
    return x / np.where(s > 0, s, 1.0)


def query_region_attention(cross: np.ndarray) -> np.ndarray:
    """``C`` (Q, P) from Q-Former cross-attention (Q, 1 + P): CLS column dropped, rows renormalised."""
    return renormalise_rows(cross[..., 1:])


def leading(slots, Q: int) -> bool:
    """Whether ``slots`` (sorted positions, or None) are the first ``Q`` positions (then a slice reads them)."""
    return slots is None or (len(slots) == Q and int(slots[0]) == 0 and int(slots[-1]) == Q - 1)


def structural(
    E: np.ndarray, C: np.ndarray, token_positions: np.ndarray, slots: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Question token -> region alignment.

    ``E`` (L, L) prompt self-attention, ``C`` (Q, P), ``token_positions`` (n,) rows of the question
    tokens in ``E``. Returns ``W`` (n, P), rows summing to 1, and visual mass ``m`` (n,):
    ``m_i = sum_{k in slots} E[i, k]``, ``a_i = E[i, slots] / m_i``, ``W[i] = a_i @ C``.
    """
    Q = C.shape[0]
    rows = E[token_positions, :Q] if leading(slots, Q) else E[np.ix_(np.asarray(token_positions), np.asarray(slots))]
    m = rows.sum(-1)
    a = rows / np.maximum(m, EPS)[:, None]
    return a @ C, m


def temporal(D: np.ndarray, C: np.ndarray, token_positions: np.ndarray, slots: np.ndarray | None = None):
    """Answer step -> region and step -> question-token attention.

    ``D`` (T, L) attention of each answer step over the prompt. Returns ``S`` (T, P) rows summing to 1,
    ``v`` (T,) visual mass, and ``step_token`` (T, n) = ``D_t[token_positions]`` (raw, not renormalised).
    """
    Q = C.shape[0]
    visual = D[:, :Q] if leading(slots, Q) else D[:, np.asarray(slots)]
    v = visual.sum(-1)
    b = visual / np.maximum(v, EPS)[:, None]
    return b @ C, v, D[:, token_positions]


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits (0..1) along the last axis."""
    p = p / np.maximum(p.sum(-1, keepdims=True), EPS)
    q = q / np.maximum(q.sum(-1, keepdims=True), EPS)
    m = 0.5 * (p + q)

    def kl(a, b):
        return np.where(a > 0, a * (np.log2(np.maximum(a, EPS)) - np.log2(np.maximum(b, EPS))), 0.0).sum(-1)

    return np.maximum(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0)


def drift(S: np.ndarray) -> np.ndarray:
    """(T - 1,) JS divergence between consecutive steps' region distributions."""
    if S.shape[0] < 2:
        return np.zeros((0,), dtype=np.float32)
    return js_divergence(S[:-1], S[1:]).astype(np.float32)


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis."""
    p = p / np.maximum(p.sum(-1, keepdims=True), EPS)
    return -(np.where(p > 0, p * np.log2(np.maximum(p, EPS)), 0.0)).sum(-1)


def spatial_spread(p: np.ndarray, grid) -> np.ndarray:
    """Attention-weighted RMS distance (in patch units) from the distribution's centroid; ``grid`` is the
    side ``G`` of a square grid or ``(rows, cols)`` (regions row-major)."""
    rows, cols = as_shape(grid)
    rr, cc = np.divmod(np.arange(rows * cols), cols)
    p = p / np.maximum(p.sum(-1, keepdims=True), EPS)
    mr, mc = p @ rr, p @ cc
    d2 = (rr - mr[..., None]) ** 2 + (cc - mc[..., None]) ** 2
    return np.sqrt((p * d2).sum(-1))
