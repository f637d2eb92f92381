"""The view functions against the stored arrays, and the exploration notebook run headless (nbclient)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from queries import views
from queries.library import QueryLibrary
from stcg.errors import StcgError
from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, driver, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("views")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=3, questions_per_image=2)
    run_id = "test-views-" + tmp.name[-6:]
    ingest_fixture_run(folder, tiny_checkpoint, run_id, tmp / "store", deletion_steps=0)
    # the notebook's default run is the latest complete one
    yield {"run_id": run_id, "store": str(tmp / "store"), "lib": QueryLibrary(driver)}
    with driver.session() as s:
        s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=run_id).consume()


def test_view_functions_match_the_stored_arrays(ingested):
    from stcg.filestore import FileStore
    from stcg_model.graph import STCGraph

    lib, run_id = ingested["lib"], ingested["run_id"]
    listed = views.list_examples(lib, run_id)
    assert len(listed) == 6
    ex_id = listed.example_id.iloc[1]
    view = views.load_example_view(lib, run_id, ex_id)  # the store the run recorded at ingestion
    rec = lib.driver.execute_query(
        "MATCH (e:Example {run_id: $r, example_id: $x}) RETURN e.store_shard AS s, e.store_key AS k", r=run_id, x=ex_id
    ).records[0]
    g = STCGraph.from_parts(*FileStore.open(ingested["store"], run_id).read(rec["s"], rec["k"]))
    wi = view.word_index("color") if "color" in [w.lower() for w in g.words] else 1
    rows = [i for i, w in enumerate(g.token_word) if w == wi]
    fig = views.token_figure(view, wi)
    np.testing.assert_allclose(fig.data[1].z, g.W[rows].mean(0).reshape(g.grid, g.grid), atol=1e-7)
    fig = views.step_figure(view, 0)
    np.testing.assert_allclose(fig.data[1].z, g.S[0].reshape(g.grid, g.grid), atol=1e-7)
    fig = views.perturbation_figure(view, "center_mask", word=wi)
    np.testing.assert_allclose(fig.data[1].z, g.dW[0][rows].mean(0).reshape(g.grid, g.grid), atol=1e-7)
    # the perturbed image is re-made exactly: its centre is grey
    img = np.asarray(views.perturbed_image(view, "center_mask"))
    h, w = img.shape[:2]
    assert np.abs(img[h // 2, w // 2].astype(int) - np.round(np.array(g.params["fill"]) * 255)).max() <= 1
    table = views.answers_table(view)
    assert list(table.perturbation) == g.perturbations and np.allclose(table.dp, g.dp)
    np.testing.assert_allclose(views.drift_figure(view).data[0].y, g.drift)
    flips = views.list_examples(lib, run_id, perturbation="center_mask")
    assert all("center_mask" in f for f in flips.flipped_under)


def _execute_notebook(env: dict[str, str | None]) -> list[dict]:
    """Run examples/explore.ipynb headless with ``env`` set (None: unset); its code cells' outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "explore.ipynb", as_version=4)
    old = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], [
        o.get("evalue") for o in outputs if o.get("output_type") == "error"
    ]
    return outputs


def _figure_titles(outputs: list[dict]) -> list[str]:
    figures = [
        o["data"]["application/vnd.plotly.v1+json"]
        for o in outputs
        if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    return [f.get("layout", {}).get("title", {}).get("text", "") for f in figures]


def test_notebook_runs_headless(ingested, tmp_path):
    # the notebook finds the run's store itself; no method asked: attention
    outputs = _execute_notebook({"STCG_RUN": ingested["run_id"], "STCG_STORE": None, "STCG_METHOD": None})
    titles = _figure_titles(outputs)
    assert len(titles) >= 1 + 2 + 6 + 1 + 3  # region, word, step, 6 perturbations, drift, 3 templates
    assert not [t for t in titles if "[" in t]  # every map is attention's (no method tag)


# ----------------------------------------------------------------------------- attribution methods
METHODS = ["attention", "rollout", "relevancy", "occlusion"]


@pytest.fixture(scope="module")
def method_run(tmp_path_factory, driver, tiny_checkpoint):
    """A run ingested with --attributions (each example's maps under rollout, relevancy, occlusion)."""
    tmp = tmp_path_factory.mktemp("views-methods")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=2, questions_per_image=2)
    run_id = "test-views-methods-" + tmp.name[-6:]
    ingest_fixture_run(
        folder, tiny_checkpoint, run_id, tmp / "store", deletion_steps=2, attributions="rollout,relevancy,occlusion"
    )
    yield {"run_id": run_id, "store": str(tmp / "store"), "lib": QueryLibrary(driver)}
    with driver.session() as s:
        s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=run_id).consume()


def _stored(method_run, view):
    """The example's arrays read straight from the file store (not through the views)."""
    from stcg.filestore import FileStore

    rec = (
        method_run["lib"]
        .driver.execute_query(
            "MATCH (e:Example {run_id: $r, example_id: $x}) RETURN e.store_shard AS s, e.store_key AS k",
            r=method_run["run_id"],
            x=view.graph.example_id,
        )
        .records[0]
    )
    meta, arrays = FileStore.open(method_run["store"], method_run["run_id"]).read(rec["s"], rec["k"])
    return meta, arrays


def test_views_switch_method_and_match_the_stored_method_arrays(method_run):
    lib, run_id = method_run["lib"], method_run["run_id"]
    ex_id = views.list_examples(lib, run_id).example_id.iloc[0]
    view = views.load_example_view(lib, run_id, ex_id)
    assert view.method_names == METHODS
    meta, arrays = _stored(method_run, view)
    g = view.graph
    G, wi = g.grid, 1
    rows = [i for i, w in enumerate(g.token_word) if w == wi]
    for method in ("rollout", "relevancy"):
        W, S = arrays[f"method/{method}/W"], arrays[f"method/{method}/S"]
        region, W_pert = arrays[f"method/{method}/region"], arrays[f"method/{method}/W_pert"]
        fig = views.token_figure(view, wi, method=method)
        np.testing.assert_allclose(fig.data[1].z, W[rows].mean(0).reshape(G, G), atol=1e-7)
        assert f"[{method}]" in fig.layout.title.text
        np.testing.assert_allclose(views.step_figure(view, 0, method=method).data[1].z, S[0].reshape(G, G), atol=1e-7)
        np.testing.assert_allclose(views.region_figure(view, method=method).data[1].z, region.reshape(G, G), atol=1e-7)
        k = g.perturbation_index("center_mask")
        fig = views.perturbation_figure(view, "center_mask", word=wi, method=method)
        np.testing.assert_allclose(fig.data[1].z, (W[rows] - W_pert[k][rows]).mean(0).reshape(G, G), atol=1e-6)
        # a different explanation than raw attention's (the switch really switches)
        assert not np.allclose(views.region_map(view, word=wi, method=method), views.region_map(view, word=wi))
    # the default is attention, the graph's own arrays
    np.testing.assert_allclose(views.token_figure(view, wi).data[1].z, g.W[rows].mean(0).reshape(G, G), atol=1e-7)
    np.testing.assert_allclose(views.region_map(view, method="attention"), g.attribution.reshape(G, G), atol=1e-7)
    # occlusion: region and steps work, a word map is a one-line error naming what to pick instead
    np.testing.assert_allclose(
        views.region_figure(view, method="occlusion").data[1].z,
        arrays["method/occlusion/region"].reshape(G, G),
        atol=1e-7,
    )
    np.testing.assert_allclose(
        views.step_figure(view, 0, method="occlusion").data[1].z,
        arrays["method/occlusion/S"][0].reshape(G, G),
        atol=1e-7,
    )
    for call in (
        lambda: views.token_figure(view, wi, method="occlusion"),
        lambda: views.perturbation_figure(view, "center_mask", word=wi, method="occlusion"),
    ):
        with pytest.raises(StcgError) as err:
            call()
        assert len(str(err.value).splitlines()) == 1
        assert "'occlusion' has no token->region map (W)" in str(err.value) and "relevancy" in str(err.value)
    with pytest.raises(StcgError, match="no explanation by method 'gradcam'; it holds attention, rollout"):
        views.token_figure(view, wi, method="gradcam")
    table = views.methods_table(view)
    assert list(table.method) == METHODS
    scores = meta["method_scores"]
    np.testing.assert_allclose(
        table.set_index("method").loc["relevancy", "deletion_ratio"], scores["relevancy"]["deletion_ratio"]
    )
    assert table.set_index("method").loc["occlusion", "maps"] == "S, region"


def test_views_of_a_run_without_methods_name_the_ingest_option(ingested):
    lib, run_id = ingested["lib"], ingested["run_id"]
    view = views.load_example_view(lib, run_id, views.list_examples(lib, run_id).example_id.iloc[0])
    assert view.method_names == ["attention"]
    with pytest.raises(StcgError, match="holds attention \\(ingest with --attributions to add others\\)$"):
        views.step_figure(view, 0, method="relevancy")


@pytest.mark.parametrize("method", ["relevancy", "occlusion"])
def test_notebook_switches_method_headless(method_run, method):
    outputs = _execute_notebook({"STCG_RUN": method_run["run_id"], "STCG_STORE": None, "STCG_METHOD": method})
    titles = _figure_titles(outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    tagged = [t for t in titles if f"[{method}]" in t]
    if method == "relevancy":  # region, word, step and the 6 perturbations under the method
        assert len(tagged) == 1 + 1 + 1 + 6, titles
    else:  # region and step; the word map is the one-line error, the dW maps fall back to attention
        assert len(tagged) == 2, titles
        assert "method 'occlusion' has no token->region map (W)" in text
        assert "occlusion has no word map, so no dW: showing attention's" in text
