"""Graph assembly: one example's pass outputs -> its ``STCGraph`` (pure: numpy and strings in, arrays out).

``derive`` turns the captured ``C``, ``E``, ``D`` of one row into the quantities of docs/spec.md section 2
(``W``, ``m``, ``S``, ``v``, step -> token attention); ``clean_attribution`` is the region attribution
the saliency perturbation and the deletion curves use; ``assemble_graph`` adds the counterfactual
differences and the text and makes the ``STCGraph``. Shapes: ``Q`` query slots, ``P`` regions, ``L``
prompt positions, ``n`` question tokens, ``T`` answer steps, ``K`` perturbations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stcg_model.families.inputs import PreparedExample
from stcg_model.graph import STCGraph
from stcg_model.maths import alignment as A
from stcg_model.maths.grounding import region_shares
from stcg_model.maths.regions import RegionGrid
from stcg_model.maths.text import group_tokens, normalize_answer, word_kind
from stcg_model.perturbations import PerturbationSpec


def derive(
    C: np.ndarray, E: np.ndarray, D: np.ndarray, positions: np.ndarray, slots: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Section 2 from ``C`` (Q, P), ``E`` (L, L), ``D`` (T, L), the question tokens' ``positions`` (n,) and
    the image slots' (Q,; default the first Q): ``{"C", "E", "D", "W" (n, P), "m" (n,), "S" (T, P), "v" (T,),
    "step_token" (T, n)}``."""
    W, m = A.structural(E, C, positions, slots)
    S, v, step_token = A.temporal(D, C, positions, slots)
    return {"C": C, "E": E, "D": D, "W": W, "m": m, "S": S, "v": v, "step_token": step_token}


def clean_attribution(S: np.ndarray, is_eos: np.ndarray) -> np.ndarray:
    """(P,) mean of ``S`` (T, P) over the answer steps that are not ``</s>`` (all steps if the answer is only ``</s>``)."""
    rows = S[~is_eos] if (~is_eos).any() else S
    return rows.mean(0)


def answer_probability(step_logprob: np.ndarray) -> float:
    """``p(y)``: the product of the step probabilities, summed in float64 logs."""
    return float(np.exp(step_logprob.astype(np.float64).sum()))


@dataclass
class PerturbedRow:
    """One perturbation of an example: its ``derive`` output with the clean answer teacher-forced, the
    (T,) step log p of the clean answer, and the text of its own greedy answer."""

    derived: dict[str, np.ndarray]
    step_logprob: np.ndarray
    answer: str


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def assemble_graph(
    ex: PreparedExample,
    *,
    tokens: list[str],
    answer: str,
    answer_tokens: list[str],
    answer_is_eos: np.ndarray,
    clean: dict[str, np.ndarray],
    attribution: np.ndarray,
    step_logprob: np.ndarray,
    perturbations: Sequence[PerturbationSpec],
    perturbed: Sequence[PerturbedRow],
    params: dict,
    store_dense: bool,
    curve: tuple[Sequence[float], Sequence[float]] | None,
) -> STCGraph:
    """The ``STCGraph`` of one example. ``clean`` is ``derive`` of its clean row; ``perturbed[k]`` the row of
    ``perturbations[k]``; ``curve`` the deletion curves (steps 1..D, by attribution and random) or ``None``.
    ``store_dense=False`` leaves ``E`` out. Every array is stored as float32."""
    q_offsets = [ex.offsets[i] for i in ex.q_index]
    words, token_word = group_tokens(ex.ex.question, q_offsets)
    step_lp = step_logprob.astype(np.float32)
    p_clean = answer_probability(step_logprob)  # from the float64 log p, not the stored float32 copy
    K = len(perturbations)
    C_p = _f32([r.derived["C"] for r in perturbed])
    W_p = _f32([r.derived["W"] for r in perturbed])
    S_p = _f32([r.derived["S"] for r in perturbed])
    p_p = [answer_probability(r.step_logprob) for r in perturbed]
    pert_answers = [r.answer for r in perturbed]
    dW = _f32(clean["W"])[None] - W_p
    n = len(ex.q_index)
    g = STCGraph(
        example_id=ex.ex.example_id,
        question=ex.ex.question,
        answer=answer,
        tokens=tokens,
        words=words,
        token_word=token_word,
        word_kinds=[word_kind(w) for w in words],
        answer_tokens=answer_tokens,
        answer_is_eos=[bool(x) for x in answer_is_eos],
        perturbations=[p.kind for p in perturbations],
        perturbation_params=[dict(p.params) for p in perturbations],
        perturbed_answers=pert_answers,
        grid=ex.grid.grid,
        grid_cols=ex.grid.grid_cols,
        image_size=ex.original_size,
        p_clean=p_clean,
        params=params,
        meta=dict(ex.ex.meta),
        C=_f32(clean["C"]),
        E=_f32(clean["E"]) if store_dense else None,
        D=_f32(clean["D"]),
        W=_f32(clean["W"]),
        m=_f32(clean["m"]),
        S=_f32(clean["S"]),
        v=_f32(clean["v"]),
        step_token=_f32(clean["step_token"]),
        drift=A.drift(_f32(clean["S"])),
        attribution=_f32(attribution),
        step_logprob=step_lp,
        boxes=RegionGrid(ex.grid.grid, *ex.original_size, ex.grid.grid_cols).boxes(),
        C_pert=C_p,
        W_pert=W_p,
        S_pert=S_p,
        dW=dW,
        dS=_f32(clean["S"])[None] - S_p,
        dC=_f32(clean["C"])[None] - C_p,
        dW_fro=_f32(np.sqrt((dW.astype(np.float64) ** 2).sum(axis=(1, 2)))) if K else _f32(np.zeros(0)),
        dW_token=_f32(np.linalg.norm(dW, axis=2)) if K else _f32(np.zeros((0, n))),
        p_pert=_f32(p_p),
        dp=_f32(p_clean - np.asarray(p_p, dtype=np.float64)) if K else _f32(np.zeros(0)),
        answer_changed=np.array([normalize_answer(a) != normalize_answer(answer) for a in pert_answers], dtype=bool),
        gt=None if ex.ex.mask is None else _f32(region_shares(ex.ex.mask, ex.grid.shape)),
    )
    if curve is not None:
        g.deletion_curve = _f32([p_clean, *curve[0]])
        g.deletion_curve_random = _f32([p_clean, *curve[1]])
    return g
