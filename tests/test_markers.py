"""The ``neo4j`` and ``model`` markers are applied from what a test uses (tests/conftest.py), so that
``pytest -m "not neo4j and not model"`` runs without a server or a model and a test that needs one
never slips into it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(marker: str, *paths: str) -> set[str]:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marker, *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {line.split("::", 1)[1] for line in res.stdout.splitlines() if "::" in line}


def test_markers_follow_fixtures_helpers_and_commands():
    files = ("tests/test_claims.py", "tests/test_scenes.py", "tests/test_scenes_model.py")
    neo4j = _collected("neo4j", *files)
    model = _collected("model", *files)
    fast = _collected("not neo4j and not model", *files)
    assert "test_cli_bad_input_is_one_line" in neo4j  # `stcg claims --run` through a helper
    assert "test_the_shipped_scenes_model_meets_the_issues_bars_on_a_test_sample" in model  # load_model
    assert "test_causal_check_scores_a_model_that_ignores_the_image_as_failing" in model  # a model fixture
    assert "test_each_answer_is_what_the_pixels_show" in fast  # pure: scenes and numpy
    assert not fast & (neo4j | model)
