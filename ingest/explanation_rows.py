"""The rows of an example's explanations (one ``Explanation`` node per attribution method, with its
statistics and faithfulness scores, and its ``ATTRIBUTES``, ``STEP_ATTRIBUTES``, ``RANKS`` and ``UNDER``
link tables) for ``ingest.rows.example_payload`` (pure: no I/O; docs/schema.md)."""

from __future__ import annotations

import numpy as np

from stcg_model.graph import MethodResult, STCGraph
from stcg_model.maths.alignment import entropy_bits, spatial_spread
from stcg_model.maths.regions import top_k_mass


def top_k_columns(x: np.ndarray, k: int) -> np.ndarray:
    """(..., k) column indices of the k largest entries per row, ties broken by lower index."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


STABILITY_PERTURBATION = "gaussian_noise"
"""The perturbation whose top-10% region overlap is an explanation's ``stability_jaccard`` (docs/spec.md section 4)."""


def explained_methods(g: STCGraph, k: int) -> list[dict]:
    """Per attribution method the graph holds (none unless ingested with ``--attributions``): its
    ``MethodResult`` and the top-k region choices of its token map (n, k), step map (T, k) and region
    attribution (k,) -- global region indices; a map the method does not define gives an empty array."""
    if not g.methods:
        return []
    out = []
    for name in g.method_names:
        m = g.method(name)
        own = name != "attention"  # attention's token and step links are ATTENDS, written above
        if own:  # as the file store keeps it (float32), so the graph's numbers equal those read back from it
            m = MethodResult(**m.arrays(), scores=m.scores)
        out.append(
            {
                "name": name,
                "result": m,
                "token_top": top_k_columns(m.W, k) if own and m.W is not None and len(m.W) else np.zeros((0, k), int),
                "step_top": top_k_columns(m.S, k) if own and m.S is not None and len(m.S) else np.zeros((0, k), int),
                "region_top": top_k_columns(np.asarray(m.region), k),
            }
        )
    return out


def ranked_links(table, key: str, source: str, top: np.ndarray, values, j: int, slot: np.ndarray, rank: np.ndarray):
    """Rows of link table ``key`` from each ``source`` row i to its top regions ``top[i]`` (n, k), for
    explanation ``j``: weight ``values[i, p]``, rank 1..k."""
    i, r = np.divmod(np.arange(top.size), top.shape[1] if top.ndim == 2 and top.shape[1] else 1)
    return table(
        key,
        **{source: i},
        explanation=np.full(i.size, j),
        region=slot[top[i, r]],
        weight=values[i, top[i, r]] if i.size else [],
        rank=rank[r],
    )


def explanation_rows(g: STCGraph, ex: str, run_id: str, explained: list[dict], slot: np.ndarray, k: int, table):
    """``Explanation`` nodes (one per method: its region attribution, token and step statistics and
    faithfulness scores) and the link tables ``attributes``, ``step_attributes``, ``ranks``, ``under``."""
    from stcg_model.maths.regions import top_fraction
    from stcg_model.statistics.metrics import jaccard

    nodes, links = [], {key: [] for key in ("attributes", "step_attributes", "ranks", "under")}
    rank = np.arange(1, k + 1)
    K = len(g.perturbations)
    for j, x in enumerate(explained):
        m = x["result"]
        region = np.asarray(m.region, np.float64)
        W = None if m.W is None else np.asarray(m.W, np.float64)
        S = None if m.S is None else np.asarray(m.S, np.float64)
        jac = [  # None where the method has no map under that perturbation (occlusion: stability perturbation only)
            jaccard(top_fraction(region, 0.1), top_fraction(m.region_pert[q], 0.1))
            if m.region_pert is not None and np.isfinite(m.region_pert[q]).all()
            else None
            for q in range(K)
        ]
        dW_fro = m.dW_fro
        stable = g.perturbations.index(STABILITY_PERTURBATION) if STABILITY_PERTURBATION in g.perturbations else None
        node = {
            "uid": f"{ex}/x/{x['name']}",
            "run_id": run_id,
            "method": x["name"],
            "attribution": region.tolist(),
            "attribution_entropy": float(entropy_bits(region)),
            # the statistics in the map's own dtype (float32, as stored), as the Token properties are computed
            "token_entropy": None if W is None else entropy_bits(m.W).tolist(),
            "token_top_k_mass": None if W is None else top_k_mass(m.W, k).tolist(),
            "token_spread": None if W is None else spatial_spread(m.W, g.grid_shape).tolist(),
            "step_entropy": None if S is None else entropy_bits(m.S).tolist(),
            "stability_jaccard": None if stable is None else jac[stable],
        }
        node.update({name: float(v) for name, v in m.scores.items()})
        nodes.append(node)
        links["attributes"] += ranked_links(table, "attributes", "token", x["token_top"], W, j, slot, rank)
        links["step_attributes"] += ranked_links(table, "step_attributes", "step", x["step_top"], S, j, slot, rank)
        top = x["region_top"]
        links["ranks"] += table(
            "ranks", explanation=np.full(top.size, j), region=slot[top], weight=region[top], rank=rank[: top.size]
        )
        links["under"] += table(
            "under",
            explanation=np.full(K, j),
            perturbation=np.arange(K),
            dW_fro=np.asarray([None] * K if dW_fro is None else np.asarray(dW_fro, np.float64).tolist(), dtype=object),
            jaccard=np.asarray(jac, dtype=object),
        )
    return nodes, links
