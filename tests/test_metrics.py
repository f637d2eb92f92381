"""Metrics against direct computations on known data."""

import numpy as np
import pytest
from scipy import stats

from stcg_model.metrics import auc, bootstrap, causal_faithfulness, deletion_faithfulness, jaccard, jaccard_stability


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


def test_bootstrap_of_constant_is_degenerate():
    e = bootstrap(lambda i: 3.0, 5, n_boot=20)
    assert (e.value, e.low, e.high, e.n) == (3.0, 3.0, 3.0, 5)
