"""The study's claims as tests on one run: a verdict with 95% intervals for each finding (pure maths).

The STCG study reported four findings and two numbers; ``evaluate_claims`` says whether each holds on
a run's STCGs: ``supported``, ``not supported`` or ``not testable`` (the data cannot decide: a
perturbation or a question group missing, fewer than ``MIN_ITEMS`` examples), with the numbers,
intervals and counts behind it. Every interval is ``stcg_model.statistics.metrics.bootstrap`` (scipy's BCa, 95%),
resampling whole examples, so an example's perturbations, tokens and pairs stay together. A sample
whose statistic is the same on every resample (a flip rate of 0 on every example; the ratio of the
perturbation that is the largest in every resample) has the zero-width interval ``[v, v]``, where
BCa itself is undefined.

1. Spatial perturbations move the weights most. Each perturbation's mean ``|dW|_F`` (over the
   examples that have it) with its interval, ranked by the mean. Supported when the interval of
   *each* spatial perturbation (``SPATIAL_PERTURBATIONS``) lies entirely above the interval of
   *every* other perturbation: ``min(low of spatial) > max(high of non-spatial)``.
2. ``color_shift`` changes the answer probability on colour questions (question type containing
   "color" / "colour"). Mean ``|dp|`` and flip rate of ``color_shift`` on colour questions, on other
   questions and of every other perturbation on colour questions. Supported when both differences
   are positive with intervals above 0: colour minus other questions (two groups of examples,
   resampled together), and ``color_shift`` minus each other perturbation on the same colour
   questions (paired per example).
3. Dissociation. Per perturbation: mean ``|dW|_F`` relative to the largest mean (the ratio, with its
   interval: the largest is re-chosen in every resample) and the flip rate. A perturbation
   dissociates when its ratio's interval lies at or above ``COMPARABLE_DW`` and its flip rate's
   interval at or below ``UNCHANGED_FLIP_RATE``. Supported when the study's perturbation
   (``DISSOCIATION_PERTURBATION``) dissociates; every dissociating perturbation is named.
4. Content tokens form stronger, more localised links than function tokens. Per example with both
   kinds: mean over its content tokens minus mean over its function tokens of the region
   distribution's entropy (bits), top-k mass and spatial spread (patches); the mean difference
   with its interval. Supported when all three intervals exclude 0 in the claimed direction
   (entropy < 0, top-k mass > 0, spread < 0). Per attribution method from the method's ``W``.
5. Causal faithfulness (the study: -0.31) and 6. Jaccard stability (the study: 0.23): the run's
   values from ``stcg_model.statistics.metrics.summarise`` (the numbers of ``stcg metrics``; per method
   ``summarise_methods``, those of ``stcg metrics --by-method``). Here the study's number is a value,
   not a direction: supported when the run's interval contains it (the run agrees with the study),
   not supported when the interval excludes it. Claim 5 decides on Pearson; Spearman is reported.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from stcg_model.graph import STCGraph
from stcg_model.statistics.claim_inputs import (
    CLAIMS,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    STUDY_CAUSAL_FAITHFULNESS,
    STUDY_JACCARD_STABILITY,
    SUPPORTED,
    TOKEN_PROPERTIES,
    VERDICTS,
    ClaimVerdict,
    Measure,
    PerturbationArrays,
    TokenArrays,
    check_kinds,
    fmt_estimate,
    kind_columns,
    mean_estimate,
    settle,
    two_group_difference,
)
from stcg_model.statistics.metrics import MIN_ITEMS, Estimate, bootstrap, summarise, summarise_methods

SPATIAL_PERTURBATIONS = ("patch_shuffle", "peripheral_mask")
"""Claim 1: the perturbations that disrupt spatial organisation."""
COLOUR_PERTURBATION = "color_shift"
COLOUR_WORDS = ("color", "colour")
"""Claim 2: a question is a colour question when its question type contains one of these."""
DISSOCIATION_PERTURBATION = "gaussian_noise"
"""Claim 3: the perturbation the study names."""
COMPARABLE_DW = 0.5
"""Claim 3: 'comparable |dW|' = mean |dW|_F at least this fraction of the largest mean."""
UNCHANGED_FLIP_RATE = 0.1
"""Claim 3: 'answer unchanged' = the answer flips on at most this fraction of examples."""


# --------------------------------------------------------------------------- the six tests
def spatial_dw_claim(
    kinds: Sequence[str],
    dW_fro: np.ndarray,
    spatial: Sequence[str] = SPATIAL_PERTURBATIONS,
    n_boot: int = 1000,
    seed: int = 0,
) -> ClaimVerdict:
    """Claim 1 from ``dW_fro`` (examples, kinds) (NaN: the example lacks that perturbation)."""
    check_kinds(kinds, dW_fro)
    cols = kind_columns(kinds, dW_fro)
    means = {k: mean_estimate(v, n_boot, seed) for k, v in cols.items() if v.size}
    order = sorted(means, key=lambda k: (-means[k].value, k))
    measures = tuple(
        Measure("mean |dW|_F", k, means[k], f"rank {r + 1}" + (", spatial" if k in spatial else ""))
        for r, k in enumerate(order)
    )
    test = (
        "each perturbation's mean |dW|_F over examples with its 95% BCa interval; supported when the interval "
        f"of each of {', '.join(spatial)} lies entirely above the interval of every other perturbation"
    )
    used = {"examples": int(len(dW_fro)), "perturbations": {k: int(cols[k].size) for k in order}}
    base = {"claim": "1", "study": CLAIMS["1"], "test": test, "measures": measures, "used": used}
    missing = [k for k in spatial if k not in means]
    others = [k for k in order if k not in spatial]
    if missing or not others:
        why = f"the run has no {', '.join(missing)}" if missing else "the run has no non-spatial perturbation"
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=why, **base)
    if any(np.isnan(means[k].low) for k in [*spatial, *others]):
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"fewer than {MIN_ITEMS} examples: no intervals", **base)
    low = min(spatial, key=lambda k: means[k].low)
    high = max(others, key=lambda k: means[k].high)
    ranks = ", ".join(f"{k} #{order.index(k) + 1}" for k in spatial)
    if means[low].low > means[high].high:
        return ClaimVerdict(
            verdict=SUPPORTED,
            reason=f"{ranks}; the lowest spatial interval ({low} {fmt_estimate(means[low])}) lies above the highest "
            f"non-spatial one ({high} {fmt_estimate(means[high])})",
            **base,
        )
    return ClaimVerdict(
        verdict=NOT_SUPPORTED,
        reason=f"{ranks}; {low} {fmt_estimate(means[low])} does not lie above {high} {fmt_estimate(means[high])}",
        **base,
    )


def is_colour_question(question_type: str | None) -> bool:
    qt = (question_type or "").lower()
    return any(w in qt for w in COLOUR_WORDS)


def colour_claim(
    kinds: Sequence[str],
    abs_dp: np.ndarray,
    flipped: np.ndarray,
    question_types: Sequence[str],
    perturbation: str = COLOUR_PERTURBATION,
    n_boot: int = 1000,
    seed: int = 0,
) -> ClaimVerdict:
    """Claim 2 from ``abs_dp`` and ``flipped`` (examples, kinds) and each example's question type."""
    check_kinds(kinds, abs_dp, flipped)
    abs_dp, flipped = np.asarray(abs_dp, np.float64), np.asarray(flipped, np.float64)
    colour = np.array([is_colour_question(q) for q in question_types], bool)
    types = sorted({q for q, c in zip(question_types, colour) if c})
    test = (
        f"mean |dp| of {perturbation} on colour questions (question type containing 'color'/'colour') minus on "
        f"other questions, and minus each other perturbation's mean |dp| on the same colour questions (paired); "
        "supported when every difference has its 95% BCa interval above 0 (flip rates reported alongside)"
    )
    used = {
        "examples": int(len(colour)),
        "colour_questions": int(colour.sum()),
        "other_questions": int((~colour).sum()),
        "colour_question_types": {t: int(sum(q == t for q in question_types)) for t in types},
    }
    base = {"claim": "2", "study": CLAIMS["2"], "test": test, "used": used}
    if perturbation not in kinds:
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"the run has no {perturbation}", **base)
    j = list(kinds).index(perturbation)
    has = ~np.isnan(abs_dp[:, j])
    cq, oq = has & colour, has & ~colour
    measures = [
        Measure("mean |dp|", f"{perturbation}, colour questions", mean_estimate(abs_dp[cq, j], n_boot, seed)),
        Measure("mean |dp|", f"{perturbation}, other questions", mean_estimate(abs_dp[oq, j], n_boot, seed)),
        Measure("flip rate", f"{perturbation}, colour questions", mean_estimate(flipped[cq, j], n_boot, seed)),
        Measure("flip rate", f"{perturbation}, other questions", mean_estimate(flipped[oq, j], n_boot, seed)),
    ]
    diffs: list[tuple[str, Estimate]] = []
    if cq.sum() and oq.sum():
        d = two_group_difference(abs_dp[has, j], colour[has], n_boot, seed)
        diffs.append(("other questions", d))
        measures.append(Measure("difference in mean |dp|", "colour minus other questions", d))
        f = two_group_difference(flipped[has, j], colour[has], n_boot, seed)
        measures.append(Measure("difference in flip rate", "colour minus other questions", f))
    others = [k for k in kinds if k != perturbation]
    for k in others:
        c = list(kinds).index(k)
        both = cq & ~np.isnan(abs_dp[:, c])
        if not both.any():
            continue
        measures.append(Measure("mean |dp|", f"{k}, colour questions", mean_estimate(abs_dp[both, c], n_boot, seed)))
        d = mean_estimate(abs_dp[both, j] - abs_dp[both, c], n_boot, seed)
        diffs.append((k, d))
        measures.append(Measure("paired difference in mean |dp|", f"{perturbation} minus {k}, colour questions", d))
    base["measures"] = tuple(measures)
    if cq.sum() < MIN_ITEMS or oq.sum() < MIN_ITEMS:
        few = "colour" if cq.sum() < MIN_ITEMS else "other"
        return ClaimVerdict(
            verdict=NOT_TESTABLE,
            reason=f"{int(cq.sum())} colour and {int(oq.sum())} other questions with {perturbation}: "
            f"fewer than {MIN_ITEMS} {few} questions",
            **base,
        )
    if not others:
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"the run has no perturbation besides {perturbation}", **base)
    if any(np.isnan(d.low) for _, d in diffs):
        return ClaimVerdict(verdict=NOT_TESTABLE, reason="a difference has no interval (degenerate sample)", **base)
    failed = [(what, d) for what, d in diffs if not d.low > 0]
    cs = measures[0].estimate
    if not failed:
        return ClaimVerdict(
            verdict=SUPPORTED,
            reason=f"{perturbation} mean |dp| on colour questions {fmt_estimate(cs)}; every difference's interval lies above 0 "
            f"(smallest: vs {min(diffs, key=lambda x: x[1].low)[0]} {fmt_estimate(min(diffs, key=lambda x: x[1].low)[1])})",
            **base,
        )
    return ClaimVerdict(
        verdict=NOT_SUPPORTED,
        reason=f"{perturbation} mean |dp| on colour questions {fmt_estimate(cs)}; interval not above 0 vs "
        + "; ".join(f"{what}: {fmt_estimate(d)}" for what, d in failed),
        **base,
    )


def dissociation_claim(
    kinds: Sequence[str],
    dW_fro: np.ndarray,
    flipped: np.ndarray,
    perturbation: str = DISSOCIATION_PERTURBATION,
    comparable: float = COMPARABLE_DW,
    unchanged: float = UNCHANGED_FLIP_RATE,
    n_boot: int = 1000,
    seed: int = 0,
) -> ClaimVerdict:
    """Claim 3 from ``dW_fro`` and ``flipped`` (examples, kinds)."""
    check_kinds(kinds, dW_fro, flipped)
    dW, fl = np.asarray(dW_fro, np.float64), np.asarray(flipped, np.float64)
    test = (
        "per perturbation: mean |dW|_F divided by the largest perturbation's mean (re-chosen in every resample) "
        f"and the flip rate, with 95% BCa intervals; a perturbation dissociates when the ratio's interval lies at or "
        f"above {comparable:g} and the flip rate's at or below {unchanged:g}; supported when {perturbation} does"
    )
    used = {
        "examples": int(len(dW)),
        "perturbations": {k: int((~np.isnan(dW[:, j])).sum()) for j, k in enumerate(kinds)},
    }
    base = {"claim": "3", "study": CLAIMS["3"], "test": test, "used": used}
    if not len(kinds) or not len(dW):
        return ClaimVerdict(verdict=NOT_TESTABLE, reason="the run has no perturbations", measures=(), **base)

    def ratio(i):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN columns of a resample: NaN, no warning
            m = np.nanmean(dW[i], axis=-2)  # (..., K)
            return m / np.nanmax(m, axis=-1, keepdims=True)

    measures, dissociating, status = [], [], {}
    for j, k in enumerate(kinds):
        has = ~np.isnan(dW[:, j])

        def rel_stat(i, j=j):
            return ratio(i)[..., j]

        rel = settle(bootstrap(rel_stat, len(dW), n_boot, seed, vectorized=True), rel_stat, seed)
        fr = mean_estimate(fl[has, j], n_boot, seed)
        ok = bool(rel.low >= comparable and fr.high <= unchanged)
        decided = not (np.isnan(rel.low) or np.isnan(fr.high))
        status[k] = (ok, decided, rel, fr)
        if ok:
            dissociating.append(k)
        detail = "dissociates" if ok else ("does not dissociate" if decided else "no interval")
        measures.append(Measure("mean |dW|_F / largest", k, rel, detail))
        measures.append(Measure("flip rate", k, fr))
    base["measures"] = tuple(measures)
    named = f"dissociating on this run: {', '.join(dissociating) or 'none'}"
    if perturbation not in kinds:
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"the run has no {perturbation}; {named}", **base)
    ok, decided, rel, fr = status[perturbation]
    if not decided:
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"fewer than {MIN_ITEMS} examples: no intervals", **base)
    what = f"{perturbation}: |dW|_F ratio {fmt_estimate(rel)}, flip rate {fmt_estimate(fr)}"
    return ClaimVerdict(verdict=SUPPORTED if ok else NOT_SUPPORTED, reason=f"{what}; {named}", **base)


def content_function_claim(
    tokens: TokenArrays | None, method: str = "attention", top_k: int | None = None, n_boot: int = 1000, seed: int = 0
) -> ClaimVerdict:
    """Claim 4 from per-token properties (``TokenArrays``; None: the method defines no per-token map)."""
    test = (
        "per example with both kinds: mean over its content tokens minus mean over its function tokens of the "
        f"region distribution's entropy, top-{top_k if top_k else 'k'} mass and spatial spread; the mean difference "
        "with its 95% BCa interval; supported when all three intervals exclude 0 in the claimed direction "
        "(entropy < 0, top-k mass > 0, spread < 0)"
    )
    base = {"claim": "4", "study": CLAIMS["4"], "test": test, "method": method}
    if tokens is None:
        return ClaimVerdict(
            verdict=NOT_TESTABLE, reason=f"{method} defines no token -> region map (W)", used={}, **base
        )
    used_ix, diffs = tokens.differences()
    kinds, counts = np.unique(tokens.kind, return_counts=True)
    used = {
        "examples": int(tokens.n_examples),
        "examples_with_both_kinds": int(len(used_ix)),
        "tokens": {str(k): int(c) for k, c in zip(kinds, counts)},
        **({"top_k": int(top_k)} if top_k else {}),
    }
    measures, failed = [], []
    for p, label, sign in TOKEN_PROPERTIES:
        est = mean_estimate(diffs[p], n_boot, seed)
        holds = bool(est.low > 0) if sign > 0 else bool(est.high < 0)
        if not holds:
            failed.append(f"{label} {fmt_estimate(est)}")
        measures.append(
            Measure(
                "content minus function",
                label,
                est,
                ("claimed < 0" if sign < 0 else "claimed > 0") + (": holds" if holds else ": does not hold"),
            )
        )
    base.update(measures=tuple(measures), used=used)
    if len(used_ix) < MIN_ITEMS or any(np.isnan(m.estimate.low) for m in measures):
        return ClaimVerdict(
            verdict=NOT_TESTABLE,
            reason=f"{len(used_ix)} examples have both content and function tokens: no intervals",
            **base,
        )
    if not failed:
        summary = "; ".join(f"{m.group} {fmt_estimate(m.estimate)}" for m in measures)
        return ClaimVerdict(verdict=SUPPORTED, reason=f"all three in the claimed direction: {summary}", **base)
    return ClaimVerdict(
        verdict=NOT_SUPPORTED, reason="interval not on the claimed side of 0: " + "; ".join(failed), **base
    )


def _study_number_claim(claim: str, test: str, decide: Measure, extra: Sequence[Measure], study: float, method: str):
    measures = (decide, *extra)
    e = decide.estimate
    base = {"claim": claim, "study": CLAIMS[claim], "test": test, "measures": measures, "method": method}
    base["used"] = {"examples": int(e.n)}
    if np.isnan(e.low):
        why = "no value" if np.isnan(e.value) else "no interval (fewer than 3 examples or a degenerate sample)"
        return ClaimVerdict(verdict=NOT_TESTABLE, reason=f"{decide.name}: {why}", **base)
    if e.low <= study <= e.high:
        return ClaimVerdict(
            verdict=SUPPORTED, reason=f"{decide.name} {fmt_estimate(e)} contains the study's {study:g}", **base
        )
    side = "above" if e.low > study else "below"
    return ClaimVerdict(
        verdict=NOT_SUPPORTED,
        reason=f"{decide.name} {fmt_estimate(e)} lies {side} the study's {study:g} (excludes it)",
        **base,
    )


def _vs_study(e: Estimate, study: float) -> str:
    if np.isnan(e.low):
        return "no interval"
    return f"excludes the study's {study:g}" if not e.low <= study <= e.high else f"contains the study's {study:g}"


def causal_faithfulness_claim(
    pearson: Estimate | None, spearman: Estimate | None = None, method: str = "attention"
) -> ClaimVerdict:
    """Claim 5 from the Pearson (deciding) and Spearman estimates of ``summarise`` / ``summarise_methods``."""
    test = (
        "Pearson correlation of |dW|_F with |dp| across (example, perturbation) pairs (Spearman alongside), "
        f"95% BCa interval over examples; supported when the interval contains the study's {STUDY_CAUSAL_FAITHFULNESS}"
    )
    if pearson is None:
        return ClaimVerdict("5", CLAIMS["5"], test, NOT_TESTABLE, f"{method} defines no |dW|_F (no W)", (), {}, method)
    dec = Measure("causal faithfulness (Pearson)", method, pearson, _vs_study(pearson, STUDY_CAUSAL_FAITHFULNESS))
    extra = []
    if spearman is not None:
        extra.append(
            Measure("causal faithfulness (Spearman)", method, spearman, _vs_study(spearman, STUDY_CAUSAL_FAITHFULNESS))
        )
    return _study_number_claim("5", test, dec, extra, STUDY_CAUSAL_FAITHFULNESS, method)


def jaccard_stability_claim(stability: Estimate | None, method: str = "attention") -> ClaimVerdict:
    """Claim 6 from the Jaccard stability estimate of ``summarise`` / ``summarise_methods``."""
    test = (
        "mean Jaccard index of the top-10% regions, clean vs gaussian_noise, 95% BCa interval over examples; "
        f"supported when the interval contains the study's {STUDY_JACCARD_STABILITY}"
    )
    if stability is None:
        return ClaimVerdict(
            "6", CLAIMS["6"], test, NOT_TESTABLE, "no example has gaussian_noise and a region map", (), {}, method
        )
    dec = Measure("Jaccard stability", method, stability, _vs_study(stability, STUDY_JACCARD_STABILITY))
    return _study_number_claim("6", test, dec, (), STUDY_JACCARD_STABILITY, method)


# --------------------------------------------------------------------------- a run
def evaluate_claims(
    graphs: Sequence[STCGraph], question_types: Sequence[str | None], top_k: int, n_boot: int = 1000, seed: int = 0
) -> list[ClaimVerdict]:
    """The six verdicts on a run's STCGs (attention, the default explanation).

    ``question_types`` per graph (as Neo4j holds them), ``top_k`` the run's region links per token
    (what ``Token.top_k_mass`` sums). Claims 5-6 are ``summarise(graphs, n_boot=n_boot, seed=seed)``,
    the numbers of ``stcg metrics``.
    """
    arr = PerturbationArrays.from_graphs(graphs, question_types)
    metrics = summarise(graphs, n_boot=n_boot, seed=seed)
    return [
        spatial_dw_claim(arr.kinds, arr.dW_fro, n_boot=n_boot, seed=seed),
        colour_claim(arr.kinds, arr.abs_dp, arr.flipped, arr.question_types, n_boot=n_boot, seed=seed),
        dissociation_claim(arr.kinds, arr.dW_fro, arr.flipped, n_boot=n_boot, seed=seed),
        content_function_claim(TokenArrays.from_graphs(graphs, top_k), "attention", top_k, n_boot, seed),
        causal_faithfulness_claim(
            metrics.get("causal_faithfulness_pearson"), metrics.get("causal_faithfulness_spearman")
        ),
        jaccard_stability_claim(metrics.get("jaccard_stability")),
    ]


def evaluate_method_claims(
    graphs: Sequence[STCGraph], top_k: int, n_boot: int = 1000, seed: int = 0
) -> list[ClaimVerdict]:
    """Claims 4-6 under every attribution method the graphs hold (attention included).

    Claim 4 from each method's ``W``; claims 5-6 from ``summarise_methods`` (the numbers of
    ``stcg metrics --by-method``). A method without ``W`` (occlusion) is not testable on 4 and 5.
    """
    per = summarise_methods(graphs, n_boot=n_boot, seed=seed)
    out = []
    for name, res in per.items():
        out.append(content_function_claim(TokenArrays.from_graphs(graphs, top_k, name), name, top_k, n_boot, seed))
        out.append(
            causal_faithfulness_claim(
                res.get("causal_faithfulness_pearson"), res.get("causal_faithfulness_spearman"), name
            )
        )
        out.append(jaccard_stability_claim(res.get("jaccard_stability"), name))
    return out


__all__ = [
    "CLAIMS",
    "ClaimVerdict",
    "Measure",
    "PerturbationArrays",
    "TokenArrays",
    "VERDICTS",
    "causal_faithfulness_claim",
    "colour_claim",
    "content_function_claim",
    "dissociation_claim",
    "evaluate_claims",
    "evaluate_method_claims",
    "jaccard_stability_claim",
    "spatial_dw_claim",
]
