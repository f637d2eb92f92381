"""`stcg demo` end to end on a few examples: ingest with the shipped demo model, every template, the report."""
from __future__ import annotations

import os
import subprocess
import sys

from queries.library import template_names


def test_demo_runs_end_to_end(tmp_path, driver):
    out = tmp_path / "demo"
    try:
        res = subprocess.run([sys.executable, "-m", "stcg.cli", "demo", "--examples", "6", "--out", str(out),
                              "--no-server", "--batch-size", "3"], capture_output=True, text=True,
                             env={**os.environ}, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "6 written, 0 failed" in res.stdout
        assert (out / "report.html").stat().st_size > 1_000_000  # plotly embedded
        assert {p.stem for p in (out / "queries").glob("*.csv")} == set(template_names())
        assert "first query" in res.stdout and "report" in res.stdout
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: 'demo-easy-vqa-6'}) DETACH DELETE n").consume()
