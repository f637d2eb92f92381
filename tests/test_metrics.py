"""Metrics against direct computations on known data; intervals against scipy.stats.bootstrap itself."""

import warnings

import numpy as np
import pytest
from scipy import stats

from stcg_model.statistics.metrics import (
    BOOTSTRAP_BATCH,
    auc,
    bootstrap,
    causal_faithfulness,
    deletion_faithfulness,
    jaccard,
    jaccard_stability,
)


def test_causal_faithfulness_matches_scipy_and_interval_contains_value():
    rng = np.random.default_rng(0)
    dW = [rng.uniform(0, 1, 6) for _ in range(40)]
    dp = [-(x * 0.5) + rng.normal(0, 0.1, 6) for x in dW]
    res = causal_faithfulness(dW, dp, n_boot=300)
    x, y = np.concatenate(dW), np.abs(np.concatenate(dp))
    assert res["pearson"].value == pytest.approx(stats.pearsonr(x, y)[0])
    assert res["spearman"].value == pytest.approx(stats.spearmanr(x, y)[0])
    assert res["pearson"].low < res["pearson"].value < res["pearson"].high and res["pearson"].n == 40
    assert res["pearson"].value > 0.7


def test_deletion_faithfulness_ratio_below_one_when_attribution_finds_evidence():
    good = [np.linspace(1, 0, 11) ** 3 for _ in range(10)]
    rand = [np.linspace(1, 0, 11) for _ in range(10)]
    res = deletion_faithfulness(good, rand, n_boot=100)
    assert res["auc"].value == pytest.approx(auc(good[0]))
    assert res["auc_random"].value == pytest.approx(0.5)
    assert res["ratio"].value == pytest.approx(auc(good[0]) / 0.5) and res["ratio"].value < 1


def test_jaccard_and_stability():
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5
    clean = [np.arange(20.0), np.arange(20.0)]
    pert = [np.arange(20.0), np.arange(20.0)[::-1].copy()]
    est = jaccard_stability(clean, pert, fraction=0.1, n_boot=50)
    assert est.value == pytest.approx(0.5)  # identical top-2 once, disjoint once


def _scipy_ci(data, statistic, n_boot, seed=0, vectorized=False, paired=False):
    res = stats.bootstrap(
        data,
        statistic,
        vectorized=vectorized,
        paired=paired,
        method="BCa",
        n_resamples=n_boot,
        batch=BOOTSTRAP_BATCH,
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval.low, res.confidence_interval.high


def test_mean_intervals_are_scipy_bca_on_the_values():
    """Resampling example indices is resampling the examples' values: the same interval as scipy on the values."""
    rng = np.random.default_rng(3)
    clean = [rng.random(40) for _ in range(30)]
    pert = [c + rng.normal(0, 0.3, 40) for c in clean]
    est = jaccard_stability(clean, pert, fraction=0.1, n_boot=400, seed=5)
    from stcg_model.maths.regions import top_fraction

    j = np.array([jaccard(top_fraction(c, 0.1), top_fraction(p, 0.1)) for c, p in zip(clean, pert)])
    assert est.value == j.mean()  # the point estimate, exactly as before
    lo, hi = _scipy_ci((j,), np.mean, 400, seed=5, vectorized=True)
    assert (est.low, est.high) == pytest.approx((lo, hi), rel=1e-12)
    assert est.method == "BCa" and est.low < est.value < est.high

    curves = [np.linspace(1, 0, 11) ** rng.uniform(1, 4) for _ in range(25)]
    rand = [np.linspace(1, 0, 11) ** rng.uniform(0.5, 2) for _ in range(25)]
    res = deletion_faithfulness(curves, rand, n_boot=300, seed=1)
    a, r = np.array([auc(c) for c in curves]), np.array([auc(c) for c in rand])
    assert res["auc"].value == a.mean() and res["ratio"].value == a.mean() / r.mean()
    assert (res["auc"].low, res["auc"].high) == pytest.approx(_scipy_ci((a,), np.mean, 300, 1, True), rel=1e-12)
    # an example's two AUCs are resampled together: scipy's paired=True
    ratio = _scipy_ci((a, r), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis), 300, 1, True, paired=True)
    assert (res["ratio"].low, res["ratio"].high) == pytest.approx(ratio, rel=1e-12)


def test_correlation_intervals_are_scipy_bca_over_examples_with_pairs_kept_together():
    rng = np.random.default_rng(0)
    dW = [rng.uniform(0, 1, 6) for _ in range(35)]
    dp = [-(x * 0.5) + rng.normal(0, 0.2, 6) for x in dW]
    dp[4][:3] = 0.1  # ties in |dp|
    res = causal_faithfulness(dW, dp, n_boot=500, seed=2)
    x, y = np.concatenate(dW), np.abs(np.concatenate(dp))
    assert res["pearson"].value == stats.pearsonr(x, y)[0]  # point estimates exactly as before
    assert res["spearman"].value == stats.spearmanr(x, y)[0]
    for kind, corr in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):

        def statistic(idx, corr=corr):  # one resample: whole examples, each with all its (|dW|_F, |dp|) pairs
            return corr(np.concatenate([dW[i] for i in idx]), np.abs(np.concatenate([dp[i] for i in idx])))[0]

        lo, hi = _scipy_ci((np.arange(len(dW)),), statistic, 500, seed=2)
        assert (res[kind].low, res[kind].high) == pytest.approx((lo, hi), rel=1e-9, abs=1e-12), kind
    # examples with different numbers of perturbations take the general path
    dW[3], dp[3] = dW[3][:4], dp[3][:4]
    mixed = causal_faithfulness(dW, dp, n_boot=200)
    x, y = np.concatenate(dW), np.abs(np.concatenate(dp))
    assert mixed["spearman"].value == stats.spearmanr(x, y)[0] and mixed["pearson"].n == 35


def test_degenerate_samples_give_nan_intervals_without_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        constant = bootstrap(lambda i: 3.0, 5, n_boot=20)
        few = jaccard_stability([np.arange(20.0)] * 2, [np.arange(20.0)[::-1].copy()] * 2, n_boot=50)
        same = jaccard_stability([np.arange(20.0)] * 6, [np.arange(20.0)] * 6, n_boot=50)
        flat = causal_faithfulness([np.ones(6)] * 5, [np.linspace(0, 1, 6)] * 5, n_boot=50)
        empty = causal_faithfulness([], [], n_boot=50)
    assert not caught, [str(w.message) for w in caught]
    assert constant.value == 3.0 and constant.n == 5 and np.isnan(constant.low) and np.isnan(constant.high)
    assert few.value == 0.0 and few.n == 2 and np.isnan(few.low)
    assert same.value == 1.0 and np.isnan(same.low) and np.isnan(same.high)
    assert np.isnan(flat["pearson"].value) and np.isnan(flat["pearson"].low)
    assert empty["spearman"].n == 0
