"""The study's claims on a stored run: verdicts with intervals, read from Neo4j and the run's file store.

The maths is ``stcg_model.statistics.claims``; this module finds the run and its examples (the library's
templates), reads their arrays from the file store (``queries.metrics.load_run_graphs``, the same
reading as ``stcg metrics``), the run's top-k from Neo4j (``claim_top_k``), and lays the verdicts out
as tables. The ``claim_*`` templates give each test's point estimates in pure Cypher (Neo4j Browser);
their numbers equal the ones here (tests/test_claims.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from queries.library import QueryLibrary

CLAIM_TEMPLATES = {
    "1": "claim_spatial_dw",
    "2": "claim_colour_dp",
    "3": "claim_dissociation",
    "4": "claim_content_function",
    "5": "claim_causal_faithfulness",
    "6": "claim_jaccard_stability",
}
"""Claim id -> the template that gives its point estimates (the default method, attention)."""


@dataclass
class RunClaims:
    """The verdicts on one run: ``verdicts`` (claims 1-6, attention), ``by_method`` (claims 4-6 under
    every attribution method the run holds; empty for attention-only runs), ``run`` (its
    ``resolve_run`` dict), ``examples``, ``top_k``, ``n_boot``."""

    run: dict
    examples: int
    top_k: int
    n_boot: int
    verdicts: list = field(default_factory=list)
    by_method: list = field(default_factory=list)


def run_top_k(lib: QueryLibrary, run_id: str) -> int | None:
    """The run's region links per token (what ``Token.top_k_mass`` sums): ``Run.top_k``, else the links
    of one of its tokens (runs that did not record it); None for a run without tokens."""
    rows = lib.run("claim_top_k", run_id=run_id)
    if rows.empty:
        return None
    rec, links = rows.iloc[0]["recorded_top_k"], rows.iloc[0]["links_per_token"]
    if rec is not None and not pd.isna(rec):
        return int(rec)
    return int(links) if links else None


def claims_of_graphs(
    lib: QueryLibrary, run: dict, graphs, question_types, n_boot: int = 1000, seed: int = 0, methods: bool = True
) -> RunClaims:
    """Verdicts on already-loaded STCGs of ``run`` (a ``resolve_run`` dict); see ``run_claims``."""
    from stcg_model.engine.engine_config import EngineConfig
    from stcg_model.statistics.claims import evaluate_claims, evaluate_method_claims

    # a run without tokens has nothing for claim 4 to test; its k is then only a label (the engine default)
    top_k = run_top_k(lib, run["run_id"]) or EngineConfig.top_k
    verdicts = evaluate_claims(graphs, question_types, top_k, n_boot=n_boot, seed=seed)
    by_method = []
    if methods and any(g.methods for g in graphs):
        by_method = evaluate_method_claims(graphs, top_k, n_boot=n_boot, seed=seed)
    return RunClaims(run, len(graphs), top_k, n_boot, verdicts, by_method)


def run_claims(
    lib: QueryLibrary,
    run: dict | str | None = None,
    store: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    option: str = "--store",
    methods: bool = True,
) -> RunClaims:
    """The verdicts on the study's claims for a run (uid or name; None: the latest complete run).

    Args:
        lib: the query library (its connection finds the run and its examples).
        run: a ``resolve_run`` dict, a run id or name, or None.
        store: file store root overriding the one the run recorded.
        n_boot, seed: bootstrap resamples and seed (claims 5-6 then equal ``stcg metrics --bootstrap n_boot``).
        option: what a missing-store error tells the user to pass.
        methods: also claims 4-6 per attribution method, when the run holds other methods.
    Raises:
        StcgError: unknown run, missing store, a run without complete examples (one line each).
    """
    from queries.metrics import load_run_graphs
    from stcg.errors import StcgError

    info = run if isinstance(run, dict) else lib.resolve_run(run)
    graphs, qtypes = load_run_graphs(lib, info, store, option)
    if not graphs:
        raise StcgError(f"run {info['run_id']} has no complete examples")
    return claims_of_graphs(lib, info, graphs, qtypes, n_boot, seed, methods)


def _interval(e) -> str:
    if pd.isna(e.value):
        return "n/a"
    return f"{e.value:.3f}" + ("" if pd.isna(e.low) else f" [{e.low:.3f}, {e.high:.3f}]")


def verdict_rows(verdicts) -> pd.DataFrame:
    """One row per claim: ``claim``, ``method``, ``study``, ``verdict``, ``numbers`` (each measure as
    ``name (group): value [low, high]``), ``reason``, ``test``."""
    rows = []
    for v in verdicts:
        nums = "; ".join(
            f"{m.name} ({m.group}): {_interval(m.estimate)}" + (f" {m.detail}" if m.detail else "") for m in v.measures
        )
        rows.append(
            {
                "claim": v.claim,
                "method": v.method,
                "study": v.study,
                "verdict": v.verdict,
                "numbers": nums,
                "reason": v.reason,
                "test": v.test,
            }
        )
    return pd.DataFrame(rows, columns=["claim", "method", "study", "verdict", "numbers", "reason", "test"])


def measure_rows(verdicts) -> pd.DataFrame:
    """One row per (claim, method, measure): ``claim``, ``method``, ``verdict``, ``measure``, ``group``,
    ``value``, ``ci_low``, ``ci_high`` (95% BCa; NaN: none), ``examples``, ``detail``, ``reason``."""
    cols = [
        "claim", "method", "verdict", "measure", "group", "value", "ci_low", "ci_high", "examples", "ci_method",
        "detail", "reason",
    ]  # fmt: skip
    rows = []
    for v in verdicts:
        for m in v.measures or [None]:
            e = m.estimate if m else None
            rows.append(
                {
                    "claim": v.claim,
                    "method": v.method,
                    "verdict": v.verdict,
                    "measure": m.name if m else None,
                    "group": m.group if m else None,
                    "value": e.value if e else float("nan"),
                    "ci_low": e.low if e else float("nan"),
                    "ci_high": e.high if e else float("nan"),
                    "examples": e.n if e else 0,
                    "ci_method": e.method if e else None,
                    "detail": m.detail if m else None,
                    "reason": v.reason,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def claims_json(result: RunClaims) -> dict:
    """Everything as plain data: the run, counts, and each verdict with its measures and ``used``."""
    return {
        "run_id": result.run["run_id"],
        "name": result.run.get("name"),
        "examples": result.examples,
        "top_k": result.top_k,
        "n_boot": result.n_boot,
        "claims": [v.as_dict() for v in result.verdicts],
        "by_method": [v.as_dict() for v in result.by_method],
    }
