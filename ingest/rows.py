"""STCGraph -> node and relationship rows for Neo4j (pure: no I/O).

Every node has a stable ``uid`` = ``<run_id>/<example_id>[/<element>]`` so writes MERGE and a rerun
never duplicates. The schema is documented in docs/schema.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ingest.explanation_rows import explained_methods, explanation_rows, top_k_columns
from ingest.schema import EXAMPLE_CHILDREN
from stcg_model.graph import STCGraph
from stcg_model.maths.alignment import entropy_bits, spatial_spread
from stcg_model.maths.grounding import chance
from stcg_model.maths.regions import top_k_mass
from stcg_model.maths.text import normalize_answer

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
    # per attribution method (runs ingested with --attributions; docs/schema.md)
    "HAS_EXPLANATION": ("Example", "HAS_EXPLANATION", "Explanation", None),
    "ATTRIBUTES": ("Token", "ATTRIBUTES", "Region", "method"),
    "STEP_ATTRIBUTES": ("Timestep", "ATTRIBUTES", "Region", "method"),
    "RANKS": ("Explanation", "RANKS", "Region", None),
    "UNDER": ("Explanation", "UNDER", "Perturbation", None),
}


@dataclass
class GraphRows:
    """What one writer call stores: packed example subgraphs, plus flat rows (failed examples).

    ``examples`` holds one payload per STCG (see ``example_payload``); ``nodes``/``rels`` hold flat
    rows grouped by label / relationship group (``REL_TYPES``), ready for UNWIND.
    """

    examples: list[dict] = field(default_factory=list)
    nodes: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    rels: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    completes: list[str] = field(default_factory=list)  # Example uids to mark complete, last

    def extend(self, other: GraphRows) -> None:
        self.examples.extend(other.examples)
        for k, v in other.nodes.items():
            self.nodes[k].extend(v)
        for k, v in other.rels.items():
            self.rels[k].extend(v)
        self.completes.extend(other.completes)

    @property
    def n_nodes(self) -> int:
        return sum(len(v) for v in self.nodes.values()) + sum(payload_counts(x)[0] for x in self.examples)

    @property
    def n_rels(self) -> int:
        return sum(len(v) for v in self.rels.values()) + sum(payload_counts(x)[1] for x in self.examples)


# payload list -> (relationship group, columns). The one place that fixes the column order of a link
# table: ``example_payload`` fills the tables by column name and the writer's statement
# (``ingest.writer.example_statement``) is generated from it. Reference columns (``REF_COLUMNS``) are
# indexes into the payload's node lists; every other column is a relationship property of that name.
LINK_COLUMNS = {
    "attends": ("ATTENDS", ("token", "region", "weight", "rank")),
    "step_attends": ("STEP_ATTENDS", ("step", "region", "weight", "rank")),
    "attends_token": ("ATTENDS_TOKEN", ("step", "token", "weight")),
    "next": ("NEXT", ("step", "js")),
    "moves": ("MOVES", ("perturbation", "region", "dW", "abs_dW", "rank")),
    "moves_token": ("MOVES_TOKEN", ("perturbation", "token", "dW_norm")),
    "dw": ("DW", ("token", "perturbation", "region", "dW", "rank")),
    "attributes": ("ATTRIBUTES", ("token", "explanation", "region", "weight", "rank")),
    "step_attributes": ("STEP_ATTRIBUTES", ("step", "explanation", "region", "weight", "rank")),
    "ranks": ("RANKS", ("explanation", "region", "weight", "rank")),
    "under": ("UNDER", ("explanation", "perturbation", "dW_fro", "jaccard")),
}
# payload node list -> label (the labels of ingest.schema.EXAMPLE_CHILDREN, in its order)
NODE_LISTS = dict(zip(("regions", "tokens", "steps", "perturbations", "explanations"), EXAMPLE_CHILDREN, strict=True))
# reference column -> the node list it indexes
REF_COLUMNS = {
    "token": "tokens",
    "region": "regions",
    "step": "steps",
    "perturbation": "perturbations",
    "explanation": "explanations",
}
# link key -> (start column, end column, end offset): the nodes a link joins. ``next`` joins step i and
# step i + 1 from one column. A reference column that is neither end (DW's perturbation) becomes a
# property holding the referenced node's ``REF_PROPERTY``.
LINK_ENDS = {
    "attends": ("token", "region", 0),
    "step_attends": ("step", "region", 0),
    "attends_token": ("step", "token", 0),
    "next": ("step", "step", 1),
    "moves": ("perturbation", "region", 0),
    "moves_token": ("perturbation", "token", 0),
    "dw": ("token", "region", 0),
    "attributes": ("token", "region", 0),
    "step_attributes": ("step", "region", 0),
    "ranks": ("explanation", "region", 0),
    "under": ("explanation", "perturbation", 0),
}
# reference column that is not an end -> (link property, property of the referenced node it holds): DW keeps
# its perturbation's kind as ``perturbation``, ATTRIBUTES its explanation's method as ``method``
REF_PROPERTY = {"perturbation": ("perturbation", "kind"), "explanation": ("method", "method")}


def _check_link_tables() -> None:
    """The link tables agree with each other and with ``REL_TYPES`` (run at import: drift fails loudly)."""
    if set(LINK_ENDS) != set(LINK_COLUMNS):
        raise AssertionError(f"LINK_ENDS and LINK_COLUMNS name different links: {set(LINK_ENDS) ^ set(LINK_COLUMNS)}")
    for key, (group, cols) in LINK_COLUMNS.items():
        start, end, _ = LINK_ENDS[key]
        start_label, _, end_label, _ = REL_TYPES[group]
        if start not in cols or end not in cols or len(set(cols)) != len(cols):
            raise AssertionError(f"link {key}: columns {cols} lack its ends {start}, {end} or repeat a name")
        if (NODE_LISTS[REF_COLUMNS[start]], NODE_LISTS[REF_COLUMNS[end]]) != (start_label, end_label):
            raise AssertionError(f"link {key}: ends {start} -> {end} do not match {group} {start_label} -> {end_label}")
        for c in cols:
            if c in REF_COLUMNS and c not in (start, end) and c not in REF_PROPERTY:
                raise AssertionError(f"link {key}: reference column {c} is neither an end nor a property")
        parallel = REL_TYPES[group][3]  # the property that tells parallel links apart must be written
        names = [REF_PROPERTY[c][0] if c in REF_PROPERTY and c not in (start, end) else c for c in cols]
        if parallel and parallel not in names:
            raise AssertionError(f"link {key}: {group} links are told apart by {parallel}, which no column writes")


_check_link_tables()


def payload_counts(x: dict) -> tuple[int, int]:
    """(nodes, relationships) one example payload writes (HAS_* and HAS_EXAMPLE included)."""
    children = sum(len(x[k]) for k in NODE_LISTS)
    return 1 + children, 1 + children + sum(len(x[k]) for k in LINK_COLUMNS)


def _f(x) -> float:
    return float(x)


def example_uid(run_id: str, example_id: str) -> str:
    return f"{run_id}/{example_id}"


def graph_rows(g: STCGraph, run_id: str, top_k: int, store_ref: dict | None = None) -> GraphRows:
    """All rows of one example, packed (``GraphRows.examples``) for the writer's one-statement path."""
    payload = example_payload(g, run_id, top_k, store_ref)
    return GraphRows(examples=[payload], completes=[payload["example"]["uid"]])


def example_payload(g: STCGraph, run_id: str, top_k: int, store_ref: dict | None = None) -> dict:
    """One example's subgraph as node property lists and index-based link tables.

    Region nodes are written for the regions some link touches (the full per-region attribution
    stays on ``Example.attribution`` and every dense array in the file store).
    """
    ex = example_uid(run_id, g.example_id)
    P = g.num_regions
    n, T, K = len(g.tokens), len(g.answer_tokens), len(g.perturbations)
    k = max(1, min(int(top_k), P))
    meta = g.meta or {}
    gt = meta.get("gt_answer")
    gt_share = None if g.gt is None else np.asarray(g.gt, dtype=np.float64)  # (P,) region shares in the mask
    auc = g.deletion_auc()
    jac = None
    if "gaussian_noise" in g.perturbations:
        from stcg_model.maths.regions import top_fraction
        from stcg_model.statistics.metrics import jaccard, step_attribution

        noisy = step_attribution(g.S_pert[g.perturbation_index("gaussian_noise")], g.answer_is_eos)
        jac = jaccard(top_fraction(g.attribution, 0.1), top_fraction(noisy, 0.1))
    example = {
        "uid": ex,
        "run_id": run_id,
        "example_id": g.example_id,
        "question": g.question,
        "question_type": meta.get("question_type", "unknown"),
        "answer_type": meta.get("answer_type", "unknown"),
        "answer": g.answer,
        "gt_answer": gt,
        "answers": list(meta.get("answers", [])),
        "correct": None if gt is None else normalize_answer(g.answer) == normalize_answer(gt),
        "p_clean": _f(g.p_clean),
        "image_path": meta.get("image_path"),
        "image_id": meta.get("image_id"),
        "width": int(g.image_size[0]),
        "height": int(g.image_size[1]),
        "grid": int(g.grid),
        "grid_cols": int(g.cols),
        "n_tokens": n,
        "n_steps": T,
        "mean_drift": _f(g.drift.mean()) if len(g.drift) else 0.0,
        "attribution_entropy": _f(entropy_bits(g.attribution)),
        "attribution": np.asarray(g.attribution, dtype=np.float64).tolist(),
        "stability_jaccard": jac,
        "deletion_auc": None if auc is None else auc[0],
        "deletion_auc_random": None if auc is None else auc[1],
        "store_shard": (store_ref or {}).get("shard"),
        "store_key": (store_ref or {}).get("key"),
        "failed": False,
        "error": None,
        # ground truth (docs/spec.md section 7), for an example with a mask of its evidence only; null otherwise
        "mask_kind": meta.get("mask_kind") if gt_share is not None else None,
        "gt": None if gt_share is None else gt_share.tolist(),
        "gt_chance": None if gt_share is None else chance(gt_share),
    }

    # top-k region choices (stable: ties go to the lower region index)
    tok_top = top_k_columns(g.W, k) if n else np.zeros((0, k), dtype=int)  # (n, k)
    step_top = top_k_columns(g.S, k) if T else np.zeros((0, k), dtype=int)  # (T, k)
    region_abs = np.abs(g.dW).sum(1) if K else np.zeros((0, P))  # (K, P)
    region_dw = g.dW.sum(1) if K else np.zeros((0, P))
    move_top = top_k_columns(region_abs, k) if K else np.zeros((0, k), dtype=int)  # (K, k)
    dw_top = top_k_columns(np.abs(g.dW), k) if K and n else np.zeros((K, n, k), dtype=int)  # (K, n, k)
    explained = explained_methods(g, k)
    used = np.unique(
        np.concatenate(
            [tok_top.ravel(), step_top.ravel(), move_top.ravel(), dw_top.ravel()]
            + [x[key].ravel() for x in explained for key in ("token_top", "step_top", "region_top")]
        ).astype(int)
    )
    slot = np.full(P, -1)
    slot[used] = np.arange(len(used))

    boxes = np.asarray(g.boxes).astype(int).tolist()
    attribution = np.asarray(g.attribution, dtype=np.float64)
    regions = [
        {
            "uid": f"{ex}/r{p}",
            "run_id": run_id,
            "index": p,
            "row": p // g.cols,
            "col": p % g.cols,
            "x0": boxes[p][0],
            "y0": boxes[p][1],
            "x1": boxes[p][2],
            "y1": boxes[p][3],
            "attribution": float(attribution[p]),
            "gt": None if gt_share is None else float(gt_share[p]),
        }
        for p in used.tolist()
    ]
    token_entropy, token_spread, token_mass = entropy_bits(g.W), spatial_spread(g.W, g.grid_shape), top_k_mass(g.W, k)
    tokens = []
    for i, tok in enumerate(g.tokens):
        w = g.token_word[i]
        tokens.append(
            {
                "uid": f"{ex}/t{i}",
                "run_id": run_id,
                "index": i,
                "text": tok,
                "word": g.words[w].lower(),
                "word_index": w,
                "kind": g.word_kinds[w],
                "visual_mass": _f(g.m[i]),
                "entropy": _f(token_entropy[i]),
                "top_k_mass": _f(token_mass[i]),
                "spread": _f(token_spread[i]),
            }
        )
    step_entropy = entropy_bits(g.S)
    steps = [
        {
            "uid": f"{ex}/s{t}",
            "run_id": run_id,
            "step": t,
            "token": tok,
            "is_eos": bool(g.answer_is_eos[t]),
            "visual_mass": _f(g.v[t]),
            "logprob": _f(g.step_logprob[t]),
            "entropy": _f(step_entropy[t]),
        }
        for t, tok in enumerate(g.answer_tokens)
    ]
    perturbations = [
        {
            "uid": f"{ex}/p/{kind}",
            "run_id": run_id,
            "kind": kind,
            "params": json.dumps(g.perturbation_params[j], sort_keys=True),
            "answer": g.perturbed_answers[j],
            "answer_changed": bool(g.answer_changed[j]),
            "p_perturbed": _f(g.p_pert[j]),
            "dp": _f(g.dp[j]),
            "abs_dp": abs(_f(g.dp[j])),
            "dW_fro": _f(g.dW_fro[j]),
            "dS_fro": _f(np.linalg.norm(g.dS[j])),
            "dC_fro": _f(np.linalg.norm(g.dC[j])),
        }
        for j, kind in enumerate(g.perturbations)
    ]

    W, S, dW = np.asarray(g.W, np.float64), np.asarray(g.S, np.float64), np.asarray(g.dW, np.float64)
    step_token = np.asarray(g.step_token, np.float64)
    rank = np.arange(1, k + 1)

    def table(key: str, **columns) -> list[list]:
        """Rows of link table ``key``, columns in ``LINK_COLUMNS`` order (ints stay ints: Cypher indexes
        lists with them)."""
        names = LINK_COLUMNS[key][1]
        if set(columns) != set(names):
            raise AssertionError(f"link table {key}: got columns {sorted(columns)}, LINK_COLUMNS has {names}")
        return [list(r) for r in zip(*(np.asarray(columns[c]).ravel().tolist() for c in names))]

    ti, tk = np.divmod(np.arange(n * k), k)  # token, rank-1 per ATTENDS row
    attends = table("attends", token=ti, region=slot[tok_top[ti, tk]], weight=W[ti, tok_top[ti, tk]], rank=rank[tk])
    si, sk = np.divmod(np.arange(T * k), k)
    step_attends = table(
        "step_attends", step=si, region=slot[step_top[si, sk]], weight=S[si, step_top[si, sk]], rank=rank[sk]
    )
    st, sn = np.divmod(np.arange(T * n), n)
    attends_token = table("attends_token", step=st, token=sn, weight=step_token[st, sn])
    nxt = table("next", step=np.arange(T - 1), js=np.asarray(g.drift, np.float64)[: max(0, T - 1)])
    mj, mk = np.divmod(np.arange(K * k), k)
    top = move_top[mj, mk]
    moves = table(
        "moves", perturbation=mj, region=slot[top], dW=region_dw[mj, top], abs_dW=region_abs[mj, top], rank=rank[mk]
    )
    pj, pn = np.divmod(np.arange(K * n), n)
    moves_token = table("moves_token", perturbation=pj, token=pn, dW_norm=np.asarray(g.dW_token, np.float64)[pj, pn])
    dj, rest = np.divmod(np.arange(K * n * k), n * k)  # perturbation-major, then token, then rank
    di, dk = np.divmod(rest, k)
    dp = dw_top[dj, di, dk]
    dw = table("dw", token=di, perturbation=dj, region=slot[dp], dW=dW[dj, di, dp], rank=rank[dk])
    explanations, method_links = explanation_rows(g, ex, run_id, explained, slot, k, table)
    return {
        "run_id": run_id,
        "example": example,
        "regions": regions,
        "tokens": tokens,
        "steps": steps,
        "perturbations": perturbations,
        "attends": attends,
        "step_attends": step_attends,
        "attends_token": attends_token,
        "next": nxt,
        "moves": moves,
        "moves_token": moves_token,
        "dw": dw,
        "explanations": explanations,
        **method_links,
    }


def flat_rows(payload: dict) -> GraphRows:
    """The same example as flat, uid-keyed rows (one dict per node and per relationship)."""
    rows = GraphRows()
    ex = payload["example"]["uid"]
    rows.nodes["Example"].append(payload["example"])
    rows.rels["HAS_EXAMPLE"].append({"a": payload["run_id"], "b": ex})
    uids = {}
    for key, label in NODE_LISTS.items():
        uids[key] = [x["uid"] for x in payload[key]]
        rows.nodes[label].extend(payload[key])
        rows.rels[f"HAS_{label.upper()}" if label != "Timestep" else "HAS_STEP"].extend(
            {"a": ex, "b": u} for u in uids[key]
        )
    for key, (group, cols) in LINK_COLUMNS.items():
        start, end, offset = LINK_ENDS[key]
        for x in payload[key]:
            v = dict(zip(cols, x))
            a = uids[REF_COLUMNS[start]][v[start]]
            b = uids[REF_COLUMNS[end]][v[end] + offset]
            props = {}
            for c in cols:
                if c in (start, end):
                    continue
                if c in REF_COLUMNS:  # DW's perturbation kind, ATTRIBUTES' method
                    name, node_property = REF_PROPERTY[c]
                    props[name] = payload[REF_COLUMNS[c]][v[c]][node_property]
                elif v[c] is not None:
                    props[c] = v[c]
            rows.rels[group].append({"a": a, "b": b, **props})
    rows.completes.append(ex)
    return rows


def failure_rows(run_id: str, example_id: str, error: str, meta: dict | None = None) -> GraphRows:
    """An Example recorded as failed (never complete), with the reason."""
    rows = GraphRows()
    meta = meta or {}
    rows.nodes["Example"].append(
        {
            "uid": example_uid(run_id, example_id),
            "run_id": run_id,
            "example_id": example_id,
            "question": meta.get("question"),
            "question_type": meta.get("question_type", "unknown"),
            "answer_type": meta.get("answer_type", "unknown"),
            "image_path": meta.get("image_path"),
            "failed": True,
            "error": error[:500],
        }
    )
    rows.rels["HAS_EXAMPLE"].append({"a": run_id, "b": example_uid(run_id, example_id)})
    return rows
