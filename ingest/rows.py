"""STCGraph -> node and relationship rows for Neo4j (pure: no I/O).

Every node has a stable ``uid`` = ``<run_id>/<example_id>[/<element>]`` so writes MERGE and a rerun
never duplicates. The schema is documented in docs/schema.md.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from stcg_model.alignment import entropy_bits, spatial_spread
from stcg_model.graph import STCGraph
from stcg_model.text import normalize_answer

# row group -> (start label, relationship type, end label, property that tells parallel links apart)
REL_TYPES = {
    "HAS_EXAMPLE": ("Run", "HAS_EXAMPLE", "Example", None),
    "HAS_TOKEN": ("Example", "HAS_TOKEN", "Token", None),
    "HAS_REGION": ("Example", "HAS_REGION", "Region", None),
    "HAS_STEP": ("Example", "HAS_STEP", "Timestep", None),
    "HAS_PERTURBATION": ("Example", "HAS_PERTURBATION", "Perturbation", None),
    "ATTENDS": ("Token", "ATTENDS", "Region", None),
    "STEP_ATTENDS": ("Timestep", "ATTENDS", "Region", None),
    "ATTENDS_TOKEN": ("Timestep", "ATTENDS_TOKEN", "Token", None),
    "NEXT": ("Timestep", "NEXT", "Timestep", None),
    "DW": ("Token", "DW", "Region", "perturbation"),
    "MOVES": ("Perturbation", "MOVES", "Region", None),
    "MOVES_TOKEN": ("Perturbation", "MOVES_TOKEN", "Token", None),
}


@dataclass
class GraphRows:
    """Rows grouped by label / relationship type, ready for UNWIND."""

    nodes: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    rels: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    completes: list[str] = field(default_factory=list)  # Example uids to mark complete, last

    def extend(self, other: "GraphRows") -> None:
        for k, v in other.nodes.items():
            self.nodes[k].extend(v)
        for k, v in other.rels.items():
            self.rels[k].extend(v)
        self.completes.extend(other.completes)

    @property
    def n_nodes(self) -> int:
        return sum(len(v) for v in self.nodes.values())

    @property
    def n_rels(self) -> int:
        return sum(len(v) for v in self.rels.values())


def _f(x) -> float:
    return float(x)


def example_uid(run_id: str, example_id: str) -> str:
    return f"{run_id}/{example_id}"


def top_k_mass(p: np.ndarray, k: int) -> np.ndarray:
    return np.sort(p, axis=-1)[..., ::-1][..., :k].sum(-1)


def graph_rows(g: STCGraph, run_id: str, top_k: int, store_ref: dict | None = None) -> GraphRows:
    """All rows of one example. ``store_ref`` (shard, key) points at its dense arrays on disk."""
    rows = GraphRows()
    ex = example_uid(run_id, g.example_id)
    P = g.num_regions
    k = max(1, min(int(top_k), P))
    meta = g.meta or {}
    gt = meta.get("gt_answer")
    token_entropy = entropy_bits(g.W)
    token_spread = spatial_spread(g.W, g.grid)
    token_mass = top_k_mass(g.W, k)
    auc = g.deletion_auc()
    jac = None
    if "gaussian_noise" in g.perturbations:
        from stcg_model.metrics import jaccard, step_attribution
        from stcg_model.regions import top_fraction

        noisy = step_attribution(g.S_pert[g.perturbation_index("gaussian_noise")], g.answer_is_eos)
        jac = jaccard(top_fraction(g.attribution, 0.1), top_fraction(noisy, 0.1))
    rows.nodes["Example"].append({
        "uid": ex, "run_id": run_id, "example_id": g.example_id, "question": g.question,
        "question_type": meta.get("question_type", "unknown"), "answer_type": meta.get("answer_type", "unknown"),
        "answer": g.answer, "gt_answer": gt, "answers": list(meta.get("answers", [])),
        "correct": None if gt is None else normalize_answer(g.answer) == normalize_answer(gt),
        "p_clean": _f(g.p_clean), "image_path": meta.get("image_path"), "image_id": meta.get("image_id"),
        "width": int(g.image_size[0]), "height": int(g.image_size[1]), "grid": int(g.grid),
        "n_tokens": len(g.tokens), "n_steps": len(g.answer_tokens),
        "mean_drift": _f(g.drift.mean()) if len(g.drift) else 0.0,
        "attribution_entropy": _f(entropy_bits(g.attribution)),
        "attribution": [float(x) for x in g.attribution],
        "stability_jaccard": jac, "deletion_auc": None if auc is None else auc[0], "deletion_auc_random": None if auc is None else auc[1],
        "store_shard": (store_ref or {}).get("shard"), "store_key": (store_ref or {}).get("key"),
        "failed": False, "error": None,
    })
    rows.rels["HAS_EXAMPLE"].append({"a": run_id, "b": ex})
    rows.completes.append(ex)
    for p in range(P):
        x0, y0, x1, y1 = (int(v) for v in g.boxes[p])
        rows.nodes["Region"].append({"uid": f"{ex}/r{p}", "run_id": run_id, "index": p, "row": p // g.grid,
                                     "col": p % g.grid, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                                     "attribution": _f(g.attribution[p])})
        rows.rels["HAS_REGION"].append({"a": ex, "b": f"{ex}/r{p}"})
    for i, tok in enumerate(g.tokens):
        w = g.token_word[i]
        uid = f"{ex}/t{i}"
        rows.nodes["Token"].append({
            "uid": uid, "run_id": run_id, "index": i, "text": tok, "word": g.words[w].lower(), "word_index": w,
            "kind": g.word_kinds[w], "visual_mass": _f(g.m[i]), "entropy": _f(token_entropy[i]),
            "top_k_mass": _f(token_mass[i]), "spread": _f(token_spread[i]),
        })
        rows.rels["HAS_TOKEN"].append({"a": ex, "b": uid})
        order = np.argsort(-g.W[i], kind="stable")[:k]
        for rank, p in enumerate(order):
            rows.rels["ATTENDS"].append({"a": uid, "b": f"{ex}/r{int(p)}", "weight": _f(g.W[i, p]), "rank": rank + 1})
    step_entropy = entropy_bits(g.S)
    for t, tok in enumerate(g.answer_tokens):
        uid = f"{ex}/s{t}"
        rows.nodes["Timestep"].append({
            "uid": uid, "run_id": run_id, "step": t, "token": tok, "is_eos": bool(g.answer_is_eos[t]),
            "visual_mass": _f(g.v[t]), "logprob": _f(g.step_logprob[t]), "entropy": _f(step_entropy[t]),
        })
        rows.rels["HAS_STEP"].append({"a": ex, "b": uid})
        order = np.argsort(-g.S[t], kind="stable")[:k]
        for rank, p in enumerate(order):
            rows.rels["STEP_ATTENDS"].append({"a": uid, "b": f"{ex}/r{int(p)}", "weight": _f(g.S[t, p]), "rank": rank + 1})
        for i in range(len(g.tokens)):
            rows.rels["ATTENDS_TOKEN"].append({"a": uid, "b": f"{ex}/t{i}", "weight": _f(g.step_token[t, i])})
        if t > 0:
            rows.rels["NEXT"].append({"a": f"{ex}/s{t - 1}", "b": uid, "js": _f(g.drift[t - 1])})
    for j, kind in enumerate(g.perturbations):
        uid = f"{ex}/p/{kind}"
        rows.nodes["Perturbation"].append({
            "uid": uid, "run_id": run_id, "kind": kind, "params": json.dumps(g.perturbation_params[j], sort_keys=True),
            "answer": g.perturbed_answers[j], "answer_changed": bool(g.answer_changed[j]),
            "p_perturbed": _f(g.p_pert[j]), "dp": _f(g.dp[j]), "abs_dp": abs(_f(g.dp[j])), "dW_fro": _f(g.dW_fro[j]),
            "dS_fro": _f(np.linalg.norm(g.dS[j])), "dC_fro": _f(np.linalg.norm(g.dC[j])),
        })
        rows.rels["HAS_PERTURBATION"].append({"a": ex, "b": uid})
        region_dw = g.dW[j].sum(0)            # (P,) signed dW summed over tokens
        region_abs = np.abs(g.dW[j]).sum(0)   # (P,) |dW| summed over tokens
        for rank, p in enumerate(np.argsort(-region_abs, kind="stable")[:k]):
            rows.rels["MOVES"].append({"a": uid, "b": f"{ex}/r{int(p)}", "dW": _f(region_dw[p]),
                                       "abs_dW": _f(region_abs[p]), "rank": rank + 1})
        for i in range(len(g.tokens)):
            rows.rels["MOVES_TOKEN"].append({"a": uid, "b": f"{ex}/t{i}", "dW_norm": _f(g.dW_token[j, i])})
            for rank, p in enumerate(np.argsort(-np.abs(g.dW[j, i]), kind="stable")[:k]):
                rows.rels["DW"].append({"a": f"{ex}/t{i}", "b": f"{ex}/r{int(p)}", "perturbation": kind,
                                        "dW": _f(g.dW[j, i, p]), "rank": rank + 1})
    return rows


def failure_rows(run_id: str, example_id: str, error: str, meta: dict | None = None) -> GraphRows:
    """An Example recorded as failed (never complete), with the reason."""
    rows = GraphRows()
    meta = meta or {}
    rows.nodes["Example"].append({
        "uid": example_uid(run_id, example_id), "run_id": run_id, "example_id": example_id,
        "question": meta.get("question"), "question_type": meta.get("question_type", "unknown"),
        "answer_type": meta.get("answer_type", "unknown"), "image_path": meta.get("image_path"),
        "failed": True, "error": error[:500],
    })
    rows.rels["HAS_EXAMPLE"].append({"a": run_id, "b": example_uid(run_id, example_id)})
    return rows
