"""`stcg demo` end to end on a few examples: ingest with the shipped demo model, every template, the report."""

from __future__ import annotations

import os
import subprocess
import sys

from queries.library import template_names
from stcg_model.engine.core import RESULTS_VERSION
from stcg_model.families.loading import default_model, model_fingerprint


def test_demo_runs_end_to_end(tmp_path, driver):
    out = tmp_path / "demo"
    try:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "stcg_cli.main",
                "demo",
                "--examples",
                "6",
                "--out",
                str(out),
                "--no-server",
                "--batch-size",
                "3",
                "--scenes",
                "4",
            ],
            capture_output=True,
            text=True,
            env={**os.environ},
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert "6 written, 0 failed" in res.stdout and "4 written, 0 failed" in res.stdout
        # the scenes run (every method, ground truth known) leads the report and is printed
        assert "Which explanation is faithful? 4 scenes questions, evidence known" in res.stdout
        assert "oracle" in res.stdout and "mass_accuracy" in res.stdout
        # the same scenes questions with the LLaVA-family scenes model, the two families side by side
        assert res.stdout.count("4 written, 0 failed") == 2, res.stdout[-3000:]
        assert "Two model families on the same 4 scenes questions" in res.stdout
        assert "mass_accuracy LLaVA" in res.stdout and "exact match: BLIP-2" in res.stdout
        compare = (out / "queries" / "compare_runs.csv").read_text()
        assert compare.count("\n") == 7  # header + the six perturbations, both families' columns filled
        assert "On known evidence first" in (out / "report.html").read_text()
        assert (out / "report.html").stat().st_size > 1_000_000  # plotly embedded
        assert {p.stem for p in (out / "queries").glob("*.csv")} == set(template_names())
        assert "first query" in res.stdout and "report" in res.stdout
        assert "stcg query show example_graph --param run_id=demo-easy-vqa-6-" in res.stdout
        fingerprint = model_fingerprint(default_model())
        assert (
            f"run_id=demo-easy-vqa-6-{fingerprint[:8]}-r{RESULTS_VERSION}" in res.stdout
        )  # a retrained model gets its own run
    finally:
        with driver.session() as s:
            s.run(
                "MATCH (n) WHERE n.run_id STARTS WITH 'demo-easy-vqa-6-' OR n.run_id STARTS WITH 'demo-scenes-4-' "
                "OR n.run_id STARTS WITH 'demo-scenes-llava-4-' "
                "DETACH DELETE n"
            ).consume()
