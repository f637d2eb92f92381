"""docs/extending.md's worked examples, read from the page: a dataset, a perturbation, an attribution method
and a sink, each one file that registers itself; the first three run together through the engine on a
tiny BLIP-2, then a whole ingestion (the shipped demo model) writes into the sink."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import IngestConfig, run_ingest
from ingest.sinks import sink_help, unregister_sink
from stcg.datasets import dataset_help, open_dataset, unregister_dataset
from stcg.errors import StcgError
from stcg_model.attribution.base import attributions_help, parse_attributions, unregister_attribution
from stcg_model.engine import EngineConfig, STCGEngine
from stcg_model.families import VQAInput
from stcg_model.perturbations import REGISTRY, parse_perturbations
from stcg_model.testing.tiny import tiny_blip2

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def doc_files() -> dict[str, str]:
    """``{file name: source}`` of the page's code blocks that start with ``# file: <name>``."""
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: code for name, code in blocks}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """The page's three files written to a folder and imported; every registration undone afterwards."""
    files = doc_files()
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = [Path(n).stem for n in files]
    try:
        yield [importlib.import_module(m) for m in modules]
    finally:
        unregister_dataset("bars")
        unregister_attribution("centre")
        unregister_sink("tally")
        REGISTRY.pop("invert", None)
        for m in modules:
            sys.modules.pop(m, None)


def test_the_page_shows_one_file_per_extension():
    assert sorted(doc_files()) == ["bars_dataset.py", "centre_method.py", "invert_perturbation.py", "tally_sink.py"]


def test_a_dataset_a_perturbation_and_a_method_from_the_page_run_through_the_engine(plugins):
    # each registry now knows the new name, in what users see
    assert "bars[:N] (one red bar per image)" in dataset_help()
    assert "centre (baseline: the centre regions)" in attributions_help()
    assert parse_attributions("centre") == ["attention", "centre"]
    assert "centre" not in parse_attributions("all")  # in_all = False: an option
    spec = parse_perturbations("invert:strength=0.5")[0]
    assert spec.kind == "invert" and spec.params == {"strength": 0.5}
    with pytest.raises(StcgError, match="strength"):
        parse_perturbations("invert:strength=2")  # its range is checked like a built-in's
    examples = open_dataset("bars:3")
    assert [e.example_id for e in examples] == ["bars:test:0", "bars:test:1", "bars:test:2"]

    lm = tiny_blip2("t5", image_size=64, patch_size=8)
    cfg = EngineConfig(attributions="centre", perturbations="invert,gaussian_noise", deletion_steps=0)
    inputs = [VQAInput(e.example_id, e.load_image(), e.question, e.meta()) for e in examples]
    with STCGEngine.from_config(lm, cfg) as engine:
        graphs = engine.explain(inputs)
    for e, g in zip(examples, graphs):
        assert g.example_id == e.example_id and g.perturbations == ["invert", "gaussian_noise"]
        assert g.method_names == ["attention", "centre"]
        centre = g.method("centre")
        assert np.flatnonzero(centre.region).tolist() == [27, 28, 35, 36]  # the 4 centre regions of 8 x 8
        assert centre.region.sum() == pytest.approx(1.0) and centre.W is None
        assert {"deletion_auc", "insertion_auc"} <= set(centre.scores)  # scored like any method
        assert centre.region_pert.shape == (2, 64)  # and recomputed under each perturbation
    # the inverted image really is the negative: the model saw a different image
    assert not np.allclose(graphs[0].dW_fro[0], 0.0)


def test_registrations_are_undone_and_unknown_names_are_one_line_errors():
    with pytest.raises(StcgError, match="unknown dataset 'bars:3'"):
        open_dataset("bars:3")
    with pytest.raises(StcgError, match="unknown attribution method 'centre'"):
        parse_attributions("centre")
    with pytest.raises(StcgError, match="unknown perturbation 'invert'"):
        parse_perturbations("invert")
    with pytest.raises(StcgError, match=r"invalid --sink 'tally:x': use neo4j or csv:<folder>"):
        IngestConfig(sink="tally:x").validate()


def test_an_ingestion_with_the_page_s_dataset_method_and_perturbation_writes_into_the_page_s_sink(plugins, tmp_path):
    assert "tally:<file> (a dry run: what each batch would write)" in sink_help()
    out = tmp_path / "dry.jsonl"
    cfg = IngestConfig(
        dataset="bars:5",
        sink=f"tally:{out}",
        store=str(tmp_path / "store"),
        batch_size=2,
        attributions="centre",
        perturbations="invert",
        deletion_steps=0,
    )
    summary = run_ingest(cfg, log=lambda s: None, progress=False)
    assert summary.status == "complete" and summary.written == 5 and summary.failures == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["examples"] for x in lines] == [2, 2, 1]  # one line per batch of the writer thread
    assert sorted(u for x in lines for u in x["completed"]) == sorted(
        f"{summary.run_id}/bars:test:{i}" for i in range(5)
    )
    assert summary.nodes == sum(x["nodes"] for x in lines) > 0
    with pytest.raises(StcgError, match="--ray writes to Neo4j only"):
        IngestConfig(sink=f"tally:{out}", ray="local").validate()
