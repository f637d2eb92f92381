"""Explanation metrics (docs/spec.md section 4) with bootstrap 95% intervals over examples.

Intervals are ``scipy.stats.bootstrap`` BCa (bias-corrected and accelerated) 95% intervals whose
resampling unit is the example: every metric is a statistic of a set of example indices, so one
resample draws examples with replacement and keeps all of an example's numbers together, as
``paired=True`` does (for the deletion ratio, an example's two AUCs; for the correlations, all of
its (``|dW|_F``, ``|dp|``) pairs, so x is never resampled apart from its y, nor one perturbation of
an image apart from the others, which are not independent). Point
estimates are the statistic on all examples, unchanged by the interval method. Degenerate samples
(fewer than 3 examples, every resample giving the same value, undefined statistics) get a NaN
interval, silently.

- causal faithfulness: Pearson / Spearman correlation, across (example, perturbation) pairs,
  between ``|dW|_F`` and ``|dp|``;
- deletion faithfulness: area under p(y) as regions are removed in decreasing attribution
  order, against a seeded random order (ratio < 1: the attribution finds what matters);
- Jaccard stability: overlap of the top-10% region sets of the clean explanation and of the
  explanation under ``gaussian_noise``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from stcg_model.graph import STCGraph
from stcg_model.maths.regions import auc, top_fraction

INTERVAL_METHOD = "BCa"
"""``scipy.stats.bootstrap`` method of every interval (named in the metric tables and the report)."""
CONFIDENCE = 0.95
BOOTSTRAP_BATCH = 256
"""Resamples (and jackknife samples) per ``scipy.stats.bootstrap`` batch: memory is batch x examples indices."""
MIN_ITEMS = 3
"""Fewer examples than this: no interval (NaN)."""


@dataclass(frozen=True)
class Estimate:
    value: float  # the statistic on all examples
    low: float  # lower end of the 95% BCa bootstrap interval (NaN: none)
    high: float  # upper end
    n: int  # examples
    method: str = INTERVAL_METHOD

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def bootstrap(
    statistic: Callable[[np.ndarray], float], n_items: int, n_boot: int = 1000, seed: int = 0, vectorized: bool = False
) -> Estimate:
    """``statistic(indices)`` on all items, with a 95% BCa interval from ``scipy.stats.bootstrap``.

    ``statistic`` maps a 1-D int array of item indices (with repeats) to a float; with
    ``vectorized=True`` it also maps an index array of shape ``(..., m)`` to the ``(...)`` array of
    its rows' values (same numbers, one call per batch). The point estimate is
    ``statistic(np.arange(n_items))``; the interval is ``scipy.stats.bootstrap((np.arange(n_items),),
    statistic, vectorized=vectorized, method="BCa", n_resamples=n_boot, batch=BOOTSTRAP_BATCH,
    rng=np.random.default_rng(seed))``: the items are resampled with replacement, and BCa's
    acceleration comes from the jackknife over items. Fewer than ``MIN_ITEMS`` items, a non-finite
    estimate, ``n_boot < 1`` or a degenerate bootstrap distribution (every resample equal, or
    undefined on some resample) give a NaN interval, without warnings.
    """
    nan = float("nan")
    if n_items == 0:
        return Estimate(nan, nan, nan, 0)
    value = float(statistic(np.arange(n_items)))
    if n_items < MIN_ITEMS or n_boot < 1 or not np.isfinite(value):
        return Estimate(value, nan, nan, n_items)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # DegenerateDataWarning, constant-input warnings of resamples
        res = stats.bootstrap(
            (np.arange(n_items),),
            (lambda idx, axis=-1: statistic(idx)) if vectorized else statistic,
            vectorized=vectorized,
            method=INTERVAL_METHOD,
            confidence_level=CONFIDENCE,
            n_resamples=n_boot,
            batch=BOOTSTRAP_BATCH,
            rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Estimate(value, nan, nan, n_items)
    return Estimate(value, lo, hi, n_items)


def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.pearsonr(x, y)[0] if kind == "pearson" else stats.spearmanr(x, y)[0])


def _rank_groups(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sort order, start of each run of equal values in sorted order, size of each run)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(sv[1:] != sv[:-1]) + 1]
    return order, starts, np.diff(np.r_[starts, sv.size])


def _weighted_ranks(w_sorted: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
    """Average ranks, in sorted order (B, N), and the sum of weight x rank^2 per row, of values with weights."""
    ties = starts.size < w_sorted.shape[1]
    gw = np.add.reduceat(w_sorted, starts, axis=1) if ties else w_sorted  # (B, runs): weight of each value
    rank = np.cumsum(gw, axis=1) - (gw - 1) / 2  # average rank of a run of ties of weight gw
    return (np.repeat(rank, sizes, axis=1) if ties else rank), (gw * rank * rank).sum(1)


class _PairCorrelation:
    """Correlation over the (x, y) pairs of a set of examples, for index resamples of the examples.

    A 1-D index array gets ``scipy.stats.pearsonr`` / ``spearmanr`` of the concatenated pairs (the
    point estimate, computed as always). A batch ``(..., m)`` of resamples is computed without
    materialising them, from each example's multiplicity in the resample: Pearson from per-example
    sums (O(examples) per resample), Spearman from multiplicity-weighted average ranks (ties,
    including an example's repeats, share the average rank; O(pairs) per resample) -- the same values
    as scipy on the materialised resample, up to rounding.
    """

    ROWS_PER_CHUNK_ELEMENTS = 2_000_000  # (rows x pairs) floats per internal chunk, to bound memory

    def __init__(self, kind: str, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]):
        self.kind, self.xs, self.ys, self.n = kind, xs, ys, len(xs)
        sizes = [x.size for x in xs]
        self.example = np.repeat(np.arange(self.n), sizes)
        self.x = np.concatenate(xs) if xs else np.zeros(0)
        self.y = np.concatenate(ys) if ys else np.zeros(0)
        if kind == "spearman":
            self.ox, self.runs_x, self.sizes_x = _rank_groups(self.x)
            self.oy, self.runs_y, self.sizes_y = _rank_groups(self.y)
            self.ex, self.ey = self.example[self.ox], self.example[self.oy]  # pairs' examples, in x / y order
            self.y_to_x = np.argsort(self.oy)[self.ox]  # position in y order of each pair, taken in x order
        elif self.x.size:
            # per-example sums of the centred pairs (correlation is shift-invariant; centring keeps the sums accurate)
            cx, cy = self.x - self.x.mean(), self.y - self.y.mean()
            cols = np.stack([np.ones_like(cx), cx, cy, cx * cx, cy * cy, cx * cy], 1)
            self.sums = np.zeros((self.n, 6))
            np.add.at(self.sums, self.example, cols)

    def __call__(self, idx: np.ndarray):
        idx = np.asarray(idx)
        if idx.ndim == 1:
            return _corr(
                self.kind, np.concatenate([self.xs[i] for i in idx]), np.concatenate([self.ys[i] for i in idx])
            )
        rows = idx.reshape(-1, idx.shape[-1])
        chunk = max(1, self.ROWS_PER_CHUNK_ELEMENTS // max(1, self.x.size))
        out = np.concatenate([self._batch(rows[k : k + chunk]) for k in range(0, len(rows), chunk)])
        return out.reshape(idx.shape[:-1])

    def _batch(self, rows: np.ndarray) -> np.ndarray:
        B = len(rows)
        counts = np.bincount((rows + self.n * np.arange(B)[:, None]).ravel(), minlength=B * self.n)
        counts = counts.reshape(B, self.n).astype(float)
        if self.kind == "pearson":
            n, sx, sy, sxx, syy, sxy = (counts @ self.sums).T
            with np.errstate(all="ignore"):
                vx, vy = sxx - sx * sx / n, syy - sy * sy / n
                r = np.clip((sxy - sx * sy / n) / np.sqrt(vx * vy), -1.0, 1.0)
            r[(vx <= 1e-12 * sxx) | (vy <= 1e-12 * syy) | (n < 3)] = np.nan  # constant x or y: undefined
            return r
        # Spearman: Pearson r of the average ranks, every pair weighted by its example's multiplicity
        wx = counts[:, self.ex]
        rx, sxx = _weighted_ranks(wx, self.runs_x, self.sizes_x)
        ry, syy = _weighted_ranks(counts[:, self.ey], self.runs_y, self.sizes_y)
        W = wx.sum(1)
        mean = (W + 1) / 2  # the mean of average ranks 1..W
        with np.errstate(all="ignore"):
            vx, vy = sxx - W * mean * mean, syy - W * mean * mean
            cov = (wx * rx * ry[:, self.y_to_x]).sum(1) - W * mean * mean
            r = np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0)
        r[(vx <= 1e-12 * W**3) | (vy <= 1e-12 * W**3) | (W < 3)] = np.nan  # all ranks tied: undefined
        return r


def causal_faithfulness(
    dW_fro: Sequence[np.ndarray], dp: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """Per example arrays (K,) of ``|dW|_F`` and ``dp``; correlation of ``|dW|_F`` with ``|dp|``.

    The correlation is over all (example, perturbation) pairs; the bootstrap resamples examples, so an
    example's pairs stay together (x with its y, and the K pairs of one image, which are not independent).
    """
    xs = [np.asarray(a, float) for a in dW_fro]
    ys = [np.abs(np.asarray(b, float)) for b in dp]
    return {
        k: bootstrap(_PairCorrelation(k, xs, ys), len(xs), n_boot, seed, vectorized=True)
        for k in ("pearson", "spearman")
    }


def deletion_faithfulness(
    curves: Sequence[np.ndarray], random_curves: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """AUC by attribution order, by random order, and their ratio (mean AUC / mean random AUC)."""
    a = np.array([auc(c) for c in curves])
    r = np.array([auc(c) for c in random_curves])

    def ratio(i):
        num, den = a[i].mean(-1), r[i].mean(-1)
        with np.errstate(all="ignore"):
            return np.where(den > 0, num / den, np.nan)

    return {
        "auc": bootstrap(lambda i: a[i].mean(-1), len(a), n_boot, seed, vectorized=True),
        "auc_random": bootstrap(lambda i: r[i].mean(-1), len(r), n_boot, seed, vectorized=True),
        "ratio": bootstrap(ratio, len(a), n_boot, seed, vectorized=True),
    }


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    sa, sb = set(int(x) for x in a), set(int(x) for x in b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def step_attribution(S: np.ndarray, is_eos: Sequence[bool]) -> np.ndarray:
    """(P,) region attribution: mean of S over the answer steps that are not </s> (all if none)."""
    keep = ~np.asarray(is_eos, bool)
    return (S[keep] if keep.any() else S).mean(0)


def jaccard_stability(
    clean: Sequence[np.ndarray],
    perturbed: Sequence[np.ndarray],
    fraction: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Mean Jaccard index of the top-``fraction`` region sets, clean vs perturbed attribution."""
    j = np.array([jaccard(top_fraction(c, fraction), top_fraction(p, fraction)) for c, p in zip(clean, perturbed)])
    return bootstrap(lambda i: j[i].mean(-1), len(j), n_boot, seed, vectorized=True)


def summarise(
    graphs: Sequence[STCGraph], stability_perturbation: str = "gaussian_noise", n_boot: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """All metrics over a set of STCGs (those missing a perturbation or curve are left out of that metric)."""
    out: dict[str, Estimate] = {}
    cf = causal_faithfulness([g.dW_fro for g in graphs], [g.dp for g in graphs], n_boot, seed)
    out["causal_faithfulness_pearson"] = cf["pearson"]
    out["causal_faithfulness_spearman"] = cf["spearman"]
    with_curves = [g for g in graphs if g.deletion_curve is not None]
    if with_curves:
        df = deletion_faithfulness(
            [g.deletion_curve for g in with_curves], [g.deletion_curve_random for g in with_curves], n_boot, seed
        )
        out.update({f"deletion_{k}": v for k, v in df.items()})
    with_noise = [g for g in graphs if stability_perturbation in g.perturbations]
    if with_noise:
        pert = [
            step_attribution(g.S_pert[g.perturbation_index(stability_perturbation)], g.answer_is_eos)
            for g in with_noise
        ]
        out["jaccard_stability"] = jaccard_stability([g.attribution for g in with_noise], pert, 0.1, n_boot, seed)
    return out


METHOD_METRICS = (
    "deletion_auc",
    "deletion_ratio",
    "insertion_auc",
    "insertion_ratio",
    "comprehensiveness",
    "sufficiency",
    "causal_faithfulness_pearson",
    "causal_faithfulness_spearman",
    "jaccard_stability",
    "mass_accuracy",
    "rank_accuracy",
    "pointing_game",
    "chance",
)
"""What ``summarise_methods`` reports per method (docs/spec.md section 7), in this order; the last four
(ground truth: ``stcg_model.maths.grounding``) only for examples with a mask."""


def _ratio_of_means(a: np.ndarray, r: np.ndarray):
    def ratio(i):
        num, den = a[i].mean(-1), r[i].mean(-1)
        with np.errstate(all="ignore"):
            return np.where(den > 0, num / den, np.nan)

    return ratio


def summarise_methods(
    graphs: Sequence[STCGraph], stability_perturbation: str = "gaussian_noise", n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Per attribution method held by the graphs: ``METHOD_METRICS`` with 95% BCa intervals.

    Ratios are ratios of means over examples (mean AUC by the method's order / mean AUC by the
    random order), as for the deletion ratio of ``summarise``; comprehensiveness and sufficiency are
    means; causal faithfulness correlates the method's ``|W - W^pi|_F`` with ``|dp|``; Jaccard
    stability compares the method's top-10% regions, clean vs ``stability_perturbation``. A metric
    a method cannot define (occlusion has no ``W``) is absent from its dict. Graphs without a method's
    scores (run without ``--attributions``) are left out of that method.
    """
    names: list[str] = []
    for g in graphs:
        names += [m for m in g.method_names if m not in names]
    out: dict[str, dict[str, Estimate]] = {}
    for name in names:
        held = [g for g in graphs if name == "attention" or name in g.methods]
        views = [g.method(name) for g in held]
        scored = [v for v in views if v.scores]
        res: dict[str, Estimate] = {}
        if scored:
            keys = [k for k in scored[0].scores if all(k in v.scores for v in scored)]
            col = {k: np.array([v.scores[k] for v in scored], dtype=np.float64) for k in keys}
            for kind in ("deletion", "insertion"):
                a, r = col[f"{kind}_auc"], col[f"{kind}_auc_random"]
                res[f"{kind}_auc"] = bootstrap(lambda i, a=a: a[i].mean(-1), len(a), n_boot, seed, vectorized=True)
                res[f"{kind}_ratio"] = bootstrap(_ratio_of_means(a, r), len(a), n_boot, seed, vectorized=True)
            for k in ("comprehensiveness", "sufficiency"):
                c = col[k]
                res[k] = bootstrap(lambda i, c=c: c[i].mean(-1), len(c), n_boot, seed, vectorized=True)
            grounded = [v.scores for v in scored if "mass_accuracy" in v.scores]
            for k in ("mass_accuracy", "rank_accuracy", "pointing_game", "chance") if grounded else ():
                c = np.array([s[k] for s in grounded], dtype=np.float64)
                c = c[np.isfinite(c)]  # an all-zero map has no mass accuracy
                if len(c):
                    res[k] = bootstrap(lambda i, c=c: c[i].mean(-1), len(c), n_boot, seed, vectorized=True)
        pairs = [(v.dW_fro, g.dp) for v, g in zip(views, held)]
        pairs = [(x, y) for x, y in pairs if x is not None]
        if pairs:
            cf = causal_faithfulness([x for x, _ in pairs], [y for _, y in pairs], n_boot, seed)
            res["causal_faithfulness_pearson"] = cf["pearson"]
            res["causal_faithfulness_spearman"] = cf["spearman"]
        stab = [
            (v.region, v.region_pert[g.perturbation_index(stability_perturbation)])
            for v, g in zip(views, held)
            if v.region_pert is not None and stability_perturbation in g.perturbations
        ]
        if stab:
            res["jaccard_stability"] = jaccard_stability([c for c, _ in stab], [p for _, p in stab], 0.1, n_boot, seed)
        out[name] = {k: res[k] for k in METHOD_METRICS if k in res}
    return out
