"""The view functions against the stored arrays, and the exploration notebook run headless (nbclient)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from queries import views
from queries.library import QueryLibrary
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


def test_notebook_runs_headless(ingested, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "explore.ipynb", as_version=4)
    env = {"STCG_RUN": ingested["run_id"], "STCG_STORE": None}  # the notebook finds the run's store itself
    old = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 2 + 6 + 1 + 3  # word, step, 6 perturbations, drift, 3 templates
