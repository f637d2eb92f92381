"""Calibration in `stcg eval`: answer probabilities and expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from stcg_model.engine.evaluation import accuracy_table, expected_calibration_error, greedy_answers_with_confidence


def test_ece_by_hand():
    # two bins used: conf 0.95 (4 answers, 3 right: |0.75 - 0.95| = 0.2) and 0.25 (4 answers, 2 right: 0.25)
    conf = [0.95] * 4 + [0.25] * 4
    correct = [1, 1, 1, 0, 1, 1, 0, 0]
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.2 + 0.5 * 0.25)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    rng = np.random.default_rng(0)
    conf = np.full(10_000, 0.7)
    right = rng.random(10_000) < 0.7
    assert expected_calibration_error(conf, right) < 0.02
    assert expected_calibration_error(np.ones(100), np.zeros(100)) == pytest.approx(1.0)
    assert np.isnan(expected_calibration_error([], []))


def test_confidence_is_the_engines_answer_probability(tiny_checkpoint):
    """The probability `stcg eval` reports is p(y | I) as the STCG engine computes it."""
    from PIL import Image

    from stcg_model.engine.core import STCGEngine, VQAInput
    from stcg_model.families.loading import load_model

    lm = load_model(tiny_checkpoint, device="cpu")
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)) for _ in range(3)]
    questions = ["what color is the circle?", "is there a red shape?", "what shape is it?"]
    answers, probs = greedy_answers_with_confidence(lm, images, questions)
    engine = STCGEngine(lm, "center_mask", deletion_steps=0)
    graphs = engine.explain([VQAInput(str(i), im, q) for i, (im, q) in enumerate(zip(images, questions))])
    assert answers == [g.answer for g in graphs]
    np.testing.assert_allclose(probs, [g.p_clean for g in graphs], rtol=1e-5, atol=1e-7)
    assert all(0.0 < p <= 1.0 for p in probs)


def test_accuracy_table_reports_ece():
    import pandas as pd

    df = pd.DataFrame(
        {
            "question_type": ["a", "a", "b", "b"],
            "exact_match": [1.0, 0.0, 1.0, 1.0],
            "vqa_accuracy": [float("nan")] * 4,
            "confidence": [0.9, 0.9, 1.0, 1.0],
        }
    )
    t = accuracy_table(df)
    assert t.loc["a", "ece_%"] == pytest.approx(40.0)  # 0.9 confident, 50% right
    assert t.loc["b", "ece_%"] == pytest.approx(0.0)
    assert t.loc["all", "mean_confidence_%"] == pytest.approx(95.0)
