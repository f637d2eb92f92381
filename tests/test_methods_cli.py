"""Attribution methods where a user looks: `stcg explain --attributions`, ingestion, `stcg metrics --by-method`."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_readme_path import stcg
from tests.vqa_fixtures import make_vqa_v2_folder

METHODS = ["attention", "rollout", "relevancy", "gradcam", "occlusion"]


def test_explain_prints_every_methods_faithfulness_and_draws_them(tmp_path):
    from PIL import Image

    from stcg_model.graph import STCGraph

    img = tmp_path / "shape.png"
    a = np.full((64, 64, 3), 230, np.uint8)
    a[20:44, 20:44] = (200, 30, 30)
    Image.fromarray(a).save(img)
    out = tmp_path / "out"
    res = stcg(
        "explain", "--image", str(img), "--question", "what color is the shape?", "--attributions", "all",
        "--perturbations", "gaussian_noise,center_mask", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("attribution methods on this example"))
    table = lines[start + 2 : start + 2 + len(METHODS)]
    assert [ln.split()[0] for ln in table] == METHODS
    for ln in table:  # four finite numbers per method
        nums = [float(x) for x in ln.split()[1:5]]
        assert all(np.isfinite(nums))
    g = STCGraph.load(out / "graph.safetensors")
    assert g.method_names == METHODS
    assert g.method("occlusion").W is None and g.method("relevancy").W_pert.shape[0] == 2
    assert (out / "shape__methods.png").is_file()


def test_unknown_method_is_one_line_before_any_work(tmp_path):
    res = stcg("explain", "--image", str(tmp_path / "none.png"), "--question", "q?", "--attributions", "lime")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: unknown attribution method 'lime'; known: attention, rollout, relevancy, gradcam, occlusion, "
        "relevancy_logp, gradcam_logp, oracle, random"
    ]


@pytest.fixture(scope="module")
def method_run(tmp_path_factory, tiny_checkpoint, driver):
    import uuid

    tmp = tmp_path_factory.mktemp("methods")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=2, questions_per_image=2)
    name = f"test-methods-{uuid.uuid4().hex[:8]}"
    res = stcg(
        "ingest", "--dataset", f"vqa-v2:{folder}", "--model", tiny_checkpoint, "--store", str(tmp / "store"),
        "--run-name", name, "--attributions", "rollout,relevancy", "--deletion-steps", "2", "--device", "cpu",
        "--quiet",
    )  # fmt: skip
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        yield name
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=name).consume()


def test_metrics_by_method_reads_the_methods_of_an_ingested_run(method_run):
    import io

    import pandas as pd

    res = stcg("metrics", "--run", method_run, "--by-method", "--overall-only", "--format", "csv", "--bootstrap", "50")
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(io.StringIO(res.stdout))
    assert sorted(set(df["method"])) == ["attention", "relevancy", "rollout"]
    rel = df[df.method == "relevancy"].set_index("metric")
    assert {"deletion_ratio", "insertion_ratio", "comprehensiveness", "sufficiency"} <= set(rel.index)
    assert (df["examples"] == 4).all()


def test_report_ranks_the_methods_of_the_run(method_run, tmp_path):
    out = tmp_path / "report.html"
    res = stcg("report", "--run", method_run, "--out", str(out), "--bootstrap", "50", "--examples", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    section = text.split("<h2>Which explanation is faithful?</h2>", 1)[1].split("<h2>", 1)[0]
    for method in ("attention", "rollout", "relevancy"):
        assert f"<td>{method}</td>" in section
    assert "deletion ratio" in section and "insertion ratio" in section
    assert section.count("data:image/png;base64,") >= 1  # each example's maps side by side
    assert "Plotly.newPlot" in section
    # per question type: the same table on each type's examples, with the numbers of `stcg metrics --by-method`
    import io
    import re

    import pandas as pd

    res = stcg("metrics", "--run", method_run, "--by-method", "--format", "csv", "--bootstrap", "50")
    assert res.returncode == 0, res.stderr[-2000:]
    ref = pd.read_csv(io.StringIO(res.stdout))
    per_type = section.split("<h3>Per question type</h3>", 1)[1]
    types = sorted(set(ref["group"]) - {"all"})
    assert types == ["is there a", "what color is the"]
    for qtype in types:
        table = per_type.split(f"<h4 class='qtype'>{qtype} (2 examples)</h4>", 1)[1].split("</table>", 1)[0]
        head = re.findall(r"<th>(.*?)</th>", table)
        cells = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]
        got = pd.DataFrame([c for c in cells if c], columns=head).set_index("method")
        assert sorted(got.index) == ["attention", "relevancy", "rollout"]
        want = ref[(ref.group == qtype) & (ref.metric == "deletion_ratio")].set_index("method")["value"]
        for method, value in want.items():  # two examples: a value, no interval
            assert np.isfinite(value) and got.loc[method, "deletion ratio"] == f"{value:.3f}"
