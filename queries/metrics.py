"""Metrics of a stored run, from its file store (no model re-run).

Which examples and where their arrays are come from the library's internal templates
(``run_info``, ``run_store_refs``); the arrays from the run's file store, found through ``Run.store``
unless a ``store`` is given.
"""

from __future__ import annotations

import pandas as pd

from queries.library import QueryLibrary


def interval_label(n_boot: int) -> str:
    """How the metric intervals are made, in words (table titles, report, CLI)."""
    from stcg_model.statistics.metrics import CONFIDENCE, INTERVAL_METHOD

    return (
        f"{CONFIDENCE:.0%} {INTERVAL_METHOD} bootstrap intervals over examples "
        f"(scipy.stats.bootstrap, {n_boot} resamples)"
    )


def resolve_run(lib: QueryLibrary, run: str | None) -> dict:
    """The run ``run`` names, or the default one (latest complete); see ``QueryLibrary.resolve_run``."""
    return lib.resolve_run(run)


def load_run_graphs(lib: QueryLibrary, run: dict | str | None, store: str | None = None, option: str = "--store"):
    """(graphs, question types) of every complete example of a run, read from its file store.

    Args:
        lib: the query library (its connection finds the examples).
        run: a ``QueryLibrary.resolve_run`` dict, a run id or name, or None (the default run).
        store: file store root overriding the one the run recorded (``Run.store``).
        option: what a missing-store error tells the user to pass (``--store`` on the CLI).
    Returns:
        ``(list of STCGraph, list of question types)``, in example-id order; empty lists when the run
        has no complete example. A missing or moved store is a one-line ``StcgError``.
    """
    from collections import defaultdict

    from stcg_model.graph import STCGraph

    info = run if isinstance(run, dict) else lib.resolve_run(run)
    rows = lib.run("run_store_refs", run_id=info["run_id"])
    if rows.empty:
        return [], []
    fs = lib.open_store(info, store, option)
    by_shard = defaultdict(list)
    for rec in rows.itertuples():
        by_shard[rec.shard].append(rec)
    graphs, qtypes = [], []
    for shard, recs in by_shard.items():
        for rec in recs:
            graphs.append(STCGraph.from_parts(*fs.read(shard, rec.key)))
            qtypes.append(rec.question_type)
    return graphs, qtypes


GROUNDING_METRICS = ("mass_accuracy", "rank_accuracy", "pointing_game", "chance")
"""The ground-truth metrics of an explanation against the mask of the evidence (docs/spec.md section 7;
``stcg_model.maths.grounding.grounding_scores``), as ``metrics_table(by_method=True)`` names them: relevance mass
accuracy, relevance rank accuracy, pointing game (0/1 per example, so its mean is a rate) and their chance
level ``K / P``."""

MASK_GROUP = "mask:"
"""Prefix of the groups of ``metrics_table(by_mask_kind=True)`` (``mask:single``, ``mask:union``,
``mask:all``), so a mask kind never reads as the whole run's group ``all``."""


def metrics_table(
    graphs,
    question_types,
    n_boot: int = 1000,
    seed: int = 0,
    by_question_type: bool = True,
    by_method: bool = False,
    by_mask_kind: bool = False,
) -> pd.DataFrame:
    """One row per (group, metric): ``value`` (all examples), ``ci_low``/``ci_high`` (95% BCa bootstrap
    interval over examples, NaN when degenerate), ``examples``, ``ci_method`` ("BCa").

    ``by_method``: one row per (group, method, metric) instead, for every attribution method the run
    holds (``stcg_model.statistics.metrics.summarise_methods``: deletion and insertion ratios, comprehensiveness,
    sufficiency, causal faithfulness and stability under each method), followed, on a run with
    ground-truth scores (masks), by ``GROUNDING_METRICS`` over the examples with a mask (from
    ``summarise_methods``). ``by_mask_kind``: also one group per mask kind of the examples
    (``mask:single``, ...; ``meta["mask_kind"]``)."""
    from stcg_model.statistics.metrics import summarise, summarise_methods

    rows = []
    groups = {"all": list(range(len(graphs)))}
    if by_question_type:
        for i, qt in enumerate(question_types):
            groups.setdefault(qt or "unknown", []).append(i)
    if by_mask_kind:
        for i, g in enumerate(graphs):
            kind = (g.meta or {}).get("mask_kind") if g.gt is not None else None
            if kind is not None:
                groups.setdefault(f"{MASK_GROUP}{kind}", []).append(i)
    for grp, idx in groups.items():
        sub = [graphs[i] for i in idx]
        if by_method:
            per = summarise_methods(sub, n_boot=n_boot, seed=seed)  # ground truth last, where masks exist
            items = [(m, name, est) for m, metrics in per.items() for name, est in metrics.items()]
        else:
            items = [(None, name, est) for name, est in summarise(sub, n_boot=n_boot, seed=seed).items()]
        for method, name, est in items:
            rows.append(
                {
                    "group": grp,
                    **({"method": method} if by_method else {}),
                    "metric": name,
                    "value": est.value,
                    "ci_low": est.low,
                    "ci_high": est.high,
                    "examples": est.n,
                    "ci_method": est.method,
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["title"] = interval_label(n_boot)
    return df
