"""Synthetic STCGs with realistic shapes, for size and speed benchmarks (never for correctness claims)."""

from __future__ import annotations

import numpy as np

from stcg_model.graph import MethodResult, STCGraph
from stcg_model.maths.regions import RegionGrid
from stcg_model.perturbations import DEFAULT_KINDS

QUESTIONS = [
    ("what color is the shape?", "what color", "other", ["red", "blue", "green", "yellow"]),
    ("is there a red circle in the image?", "is there", "yes/no", ["yes", "no"]),
    ("what shape is in the image?", "what shape", "other", ["circle", "triangle", "rectangle"]),
]


def _dist(rng, shape, sharp=3.0):
    x = rng.gamma(1.0 / sharp, size=shape)
    return (x / x.sum(-1, keepdims=True)).astype(np.float32)


def synthetic_graph(
    example_id: str,
    rng: np.random.Generator,
    grid: int = 8,
    n_queries: int = 8,
    perturbations=DEFAULT_KINDS,
    image_size=(64, 64),
    methods: tuple[str, ...] = (),
) -> STCGraph:
    """A random but internally consistent STCGraph (rows sum to 1, dW = W - W_pert, ...).

    ``methods``: names of other attribution methods to attach random explanations for (``attention``
    gets scores only, as ingestion does); ``occlusion`` gets a region map and ``S`` but no ``C``/``W``,
    ties at zero and maps under ``gaussian_noise`` only (NaN rows), as the real method has.
    """
    from stcg_model.maths.alignment import drift
    from stcg_model.maths.text import word_kind, word_spans

    q, qtype, atype, answers = QUESTIONS[int(rng.integers(len(QUESTIONS)))]
    words = [w for w, _, _ in word_spans(q)]
    n, P, K, Q = len(words), grid * grid, len(perturbations), n_queries
    answer = answers[int(rng.integers(len(answers)))]
    T = 2
    L = Q + n + 1
    C = _dist(rng, (Q, P))
    W = _dist(rng, (n, P))
    S = _dist(rng, (T, P))
    W_p = _dist(rng, (K, n, P))
    S_p = _dist(rng, (K, T, P))
    C_p = _dist(rng, (K, Q, P))
    p_clean = float(rng.uniform(0.3, 1.0))
    p_p = rng.uniform(0.0, 1.0, K).astype(np.float32)
    pert_answers = [answer if rng.random() < 0.6 else answers[int(rng.integers(len(answers)))] for _ in range(K)]
    dW = W[None] - W_p
    g = STCGraph(
        example_id=example_id,
        question=q,
        answer=answer,
        tokens=[w.lower() for w in words],
        words=words,
        token_word=list(range(n)),
        word_kinds=[word_kind(w) for w in words],
        answer_tokens=[answer, "</s>"],
        answer_is_eos=[False, True],
        perturbations=list(perturbations),
        perturbation_params=[{} for _ in perturbations],
        perturbed_answers=pert_answers,
        grid=grid,
        image_size=image_size,
        p_clean=p_clean,
        params={"synthetic": True},
        meta={
            "question_type": qtype,
            "answer_type": atype,
            "gt_answer": answers[0],
            "answers": [answers[0]],
            "image_path": None,
            "image_id": example_id,
        },
        C=C,
        E=_dist(rng, (L, L)),
        D=_dist(rng, (T, L)),
        W=W,
        m=rng.uniform(0.1, 0.9, n).astype(np.float32),
        S=S,
        v=rng.uniform(0.1, 0.9, T).astype(np.float32),
        step_token=_dist(rng, (T, n)),
        drift=drift(S),
        attribution=S[0].copy(),
        step_logprob=np.log(rng.uniform(0.5, 1.0, T)).astype(np.float32),
        boxes=RegionGrid(grid, *image_size).boxes(),
        C_pert=C_p,
        W_pert=W_p,
        S_pert=S_p,
        dW=dW,
        dS=S[None] - S_p,
        dC=C[None] - C_p,
        dW_fro=np.sqrt((dW**2).sum(axis=(1, 2))).astype(np.float32),
        dW_token=np.linalg.norm(dW, axis=2).astype(np.float32),
        p_pert=p_p,
        dp=(p_clean - p_p).astype(np.float32),
        answer_changed=np.array([a != answer for a in pert_answers]),
        deletion_curve=np.linspace(p_clean, 0.05, 11).astype(np.float32) ** 2,
        deletion_curve_random=np.linspace(p_clean, 0.05, 11).astype(np.float32),
    )
    if methods:
        g.methods = {"attention": MethodResult(region=g.attribution, scores=_scores(rng, p_clean))}
        for name in methods:
            region = _dist(rng, (P,))
            region_pert = _dist(rng, (K, P))
            if name == "occlusion":  # (p - p_masked)+ : many regions tie at zero
                region[rng.random(P) < 0.5] = 0.0
                region /= region.sum()
                region_pert[[k != "gaussian_noise" for k in perturbations]] = np.nan  # stability perturbation only
                g.methods[name] = MethodResult(
                    region=region, S=_dist(rng, (T, P)), region_pert=region_pert, scores=_scores(rng, p_clean)
                )
                continue
            g.methods[name] = MethodResult(
                region=region,
                C=_dist(rng, (Q, P)),
                W=_dist(rng, (n, P)),
                S=_dist(rng, (T, P)),
                W_pert=_dist(rng, (K, n, P)),
                region_pert=region_pert,
                scores=_scores(rng, p_clean),
            )
    return g


def _scores(rng: np.random.Generator, p_clean: float) -> dict[str, float]:
    """Random but consistent faithfulness scores (``stcg_model.maths.faithfulness.summarise``'s keys)."""
    d, dr, i, ir = (float(x) for x in rng.uniform(0.05, 1.0, 4) * p_clean)
    return {
        "deletion_auc": d,
        "deletion_auc_random": dr,
        "deletion_ratio": d / dr,
        "insertion_auc": i,
        "insertion_auc_random": ir,
        "insertion_ratio": i / ir,
        "comprehensiveness": float(rng.uniform(-0.1, 1.0) * p_clean),
        "sufficiency": float(rng.uniform(-0.1, 1.0) * p_clean),
    }


def add_ground_truth(g: STCGraph, rng: np.random.Generator, mask_kind: str = "single") -> STCGraph:
    """``g`` with a random ground-truth mask (4-16 regions, shares in (0, 1]), ``mask_kind`` and every
    method's ground-truth scores (``stcg_model.maths.grounding``), as ingestion of a dataset with masks gives."""
    from stcg_model.maths.grounding import grounding_scores

    P = g.num_regions
    inside = rng.choice(P, int(rng.integers(4, 17)), replace=False)
    g.gt = np.zeros(P, np.float32)
    g.gt[inside] = rng.uniform(0.1, 1.0, inside.size).astype(np.float32)
    g.meta["mask_kind"] = mask_kind
    for name in g.method_names:
        if name in g.methods:
            g.methods[name].scores.update(grounding_scores(g.method(name).region, g.gt))
    return g
