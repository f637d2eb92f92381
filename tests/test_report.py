"""The HTML report of a real ingested run, opened in headless Chromium: plots drawn, no console errors."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, driver, tiny_checkpoint):
    from queries.library import QueryLibrary
    from queries.report import build_report

    tmp = tmp_path_factory.mktemp("report")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=5, questions_per_image=2)
    run_id = "test-report-" + tmp.name[-8:]
    ingest_fixture_run(folder, tiny_checkpoint, run_id, tmp / "store", deletion_steps=2)
    path = build_report(QueryLibrary(driver), run_id, str(tmp / "store"), tmp / "report.html", examples=2, n_boot=50)
    yield path
    with driver.session() as s:
        s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=run_id).consume()


def test_report_is_self_contained(report_file):
    text = report_file.read_text()
    assert not re.search(r"<script[^>]+src=", text)  # no external script: plotly.js is embedded, works offline
    # perturbations, token kinds and metrics always plot; drift only when answers have >1 step
    drift = text.split("Temporal drift", 1)[1].split("<h2>", 1)[0]
    assert text.count("Plotly.newPlot") >= 3 + ("(no rows)" not in drift)
    assert "Plotly.newPlot" in drift or "(no rows)" in drift
    for section in ("Perturbations", "Token-type localisation", "Temporal drift", "Metrics", "Examples"):
        assert section in text
    assert len(re.findall(r"data:image/png;base64,", text)) >= 4  # example heatmaps embedded


def test_report_renders_in_headless_chromium(report_file, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (installed by .ci/run)"
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            "--virtual-time-budget=10000",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            report_file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not [ln for ln in console if "rror" in ln or "Uncaught" in ln], console
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.std() > 10  # not a blank page
    # plotly draws its plot area with coloured marks: look for strongly saturated pixels (bars, markers)
    sat = img.max(-1) - img.min(-1)
    assert (sat > 80).sum() > 2000


def test_a_run_without_other_methods_has_no_method_section(report_file):
    assert "Which explanation is faithful?" not in report_file.read_text()  # attention alone: nothing to rank


def test_the_study_claims_come_first_with_the_numbers_of_stcg_claims(report_file, driver):
    from queries.claims import run_claims
    from queries.library import QueryLibrary
    from stcg_model.statistics.claims import VERDICTS

    text = report_file.read_text()
    assert re.findall(r"<h2[^>]*>([^<]*)</h2>", text)[0] == "The study's claims on this run"
    section = text.split("The study's claims on this run</h2>", 1)[1].split("<h2", 1)[0]
    rows = re.findall(r"<tr><td>(\d)</td>.*?<td class='verdict [a-z-]+'><b>([^<]+)</b>", section)
    assert [c for c, _ in rows] == ["1", "2", "3", "4", "5", "6"]
    run_id = re.search(r"run <code>([^<]+)</code>", text).group(1)
    res = run_claims(QueryLibrary(driver), run_id, n_boot=50)  # the report's resamples: the same numbers
    assert [v for _, v in rows] == [v.verdict for v in res.verdicts]
    assert all(v in VERDICTS for _, v in rows)
    for v in res.verdicts:
        for m in v.measures:
            e = m.estimate
            if e.value == e.value:  # every finite number behind a verdict is printed, with its interval
                shown = f"{e.value:.3f}" + ("" if e.low != e.low else f" [{e.low:.3f}, {e.high:.3f}]")
                assert html.escape(f"{m.name} ({m.group}): {shown}, n={e.n}") in section, (v.claim, m.name, m.group)
