"""Explanation metrics (STCG_SPEC section 4) with bootstrap 95% intervals over examples.

- causal faithfulness: Pearson / Spearman correlation, across (example, perturbation) pairs,
  between ``|dW|_F`` and ``|dp|``;
- deletion faithfulness: area under p(y) as regions are removed in decreasing attribution
  order, against a seeded random order (ratio < 1: the attribution finds what matters);
- Jaccard stability: overlap of the top-10% region sets of the clean explanation and of the
  explanation under ``gaussian_noise``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from stcg_model.graph import STCGraph
from stcg_model.regions import top_fraction


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float  # 2.5th bootstrap percentile
    high: float  # 97.5th bootstrap percentile
    n: int  # examples

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def bootstrap(statistic: Callable[[np.ndarray], float], n_items: int, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """``statistic(indices)`` on all items and on ``n_boot`` resamples of the items (with replacement)."""
    if n_items == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(statistic(np.arange(n_items)))
    rng = np.random.default_rng(seed)
    boots = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_boot)], dtype=float)
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return Estimate(value, float("nan"), float("nan"), n_items)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Estimate(value, float(lo), float(hi), n_items)


def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.pearsonr(x, y)[0] if kind == "pearson" else stats.spearmanr(x, y)[0])


def causal_faithfulness(
    dW_fro: Sequence[np.ndarray], dp: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """Per example arrays (K,) of ``|dW|_F`` and ``dp``; correlation of ``|dW|_F`` with ``|dp|``."""
    xs = [np.asarray(a, float) for a in dW_fro]
    ys = [np.abs(np.asarray(b, float)) for b in dp]

    def stat(kind):
        return lambda idx: _corr(kind, np.concatenate([xs[i] for i in idx]), np.concatenate([ys[i] for i in idx]))

    return {k: bootstrap(stat(k), len(xs), n_boot, seed) for k in ("pearson", "spearman")}


def auc(curve: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at equally spaced removed fractions 0..1."""
    curve = np.asarray(curve, float)
    return float(np.trapezoid(curve, np.linspace(0.0, 1.0, len(curve))))


def deletion_faithfulness(
    curves: Sequence[np.ndarray], random_curves: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """AUC by attribution order, by random order, and their ratio (mean AUC / mean random AUC)."""
    a = np.array([auc(c) for c in curves])
    r = np.array([auc(c) for c in random_curves])
    return {
        "auc": bootstrap(lambda i: a[i].mean(), len(a), n_boot, seed),
        "auc_random": bootstrap(lambda i: r[i].mean(), len(r), n_boot, seed),
        "ratio": bootstrap(lambda i: a[i].mean() / r[i].mean() if r[i].mean() > 0 else np.nan, len(a), n_boot, seed),
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
    return bootstrap(lambda i: j[i].mean(), len(j), n_boot, seed)


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
