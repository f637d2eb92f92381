"""README's "Using it" commands in the order a newcomer types them, on the real CLI and the real Neo4j.

Ingest with a custom --store, then `stcg metrics` and `stcg report` WITHOUT --store: the run
remembers its file store (Run.store). A moved store is one line naming the path tried and --store.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stcg.errors import StcgError
from tests.vqa_fixtures import make_vqa_v2_folder


def stcg(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, tiny_checkpoint, driver):
    import uuid

    tmp = tmp_path_factory.mktemp("readme")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=2, questions_per_image=2)
    name = f"test-readme-{uuid.uuid4().hex[:8]}"
    store = tmp / "custom"
    res = stcg(
        "ingest",
        "--dataset",
        f"vqa-v2:{folder}",
        "--model",
        tiny_checkpoint,
        "--store",
        str(store),
        "--run-name",
        name,
        "--deletion-steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
    )
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        yield {"run": name, "store": store, "tmp": tmp}
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=name).consume()


def test_metrics_and_report_find_the_store_the_run_recorded(ingested, driver):
    run, tmp = ingested["run"], ingested["tmp"]
    recorded = driver.execute_query("MATCH (r:Run {uid: $r}) RETURN r.store AS s", r=run).records[0]["s"]
    assert recorded == str(ingested["store"].resolve())  # ingestion records the absolute root

    res = stcg("metrics", "--run", run)  # README: `stcg metrics` (no --store)
    assert res.returncode == 0, res.stderr
    assert f"run {run}: 4 examples" in res.stdout and "BCa bootstrap" in res.stdout
    assert "causal_faithfulness_pearson" in res.stdout and "ci_method" in res.stdout

    out = tmp / "reports" / "new" / "report.html"  # README: `stcg report --out report.html`, into a new folder
    res = stcg("report", "--run", run, "--out", str(out), "--bootstrap", "50", "--examples", "1")
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 100_000
    assert f"created folder {out.parent}" in res.stdout and f"wrote {out}" in res.stdout
    assert "BCa bootstrap intervals" in out.read_text()


def test_a_moved_store_is_one_line_naming_the_path_and_the_option(ingested):
    run, store = ingested["run"], ingested["store"]
    moved = store.with_name("moved")
    store.rename(moved)
    try:
        for cmd in (("metrics", "--run", run), ("report", "--run", run, "--out", str(ingested["tmp"] / "r.html"))):
            res = stcg(*cmd)
            assert res.returncode == 2, (cmd, res.stdout, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert str(store.resolve() / run) in lines[0] and "--store" in lines[0], lines[0]
        res = stcg("metrics", "--run", run, "--store", str(moved), "--overall-only")  # the override still works
        assert res.returncode == 0, res.stderr
    finally:
        moved.rename(store)


def test_a_deleted_shard_is_one_line(ingested):
    run, store = ingested["run"], ingested["store"]
    shards = sorted((store / run / "shards").glob("part-*.safetensors"))
    assert shards
    hidden = shards[0].with_name("hidden.bak")
    shards[0].rename(hidden)
    try:
        res = stcg("metrics", "--run", run)
        assert res.returncode == 2, res.stdout
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert shards[0].name in lines[0] and "missing" in lines[0], lines[0]
    finally:
        hidden.rename(shards[0])


def test_views_use_the_recorded_store(ingested):
    from queries import views
    from queries.library import QueryLibrary

    with QueryLibrary() as lib:
        ex = views.list_examples(lib, ingested["run"]).example_id.iloc[0]
        view = views.load_example_view(lib, ingested["run"], ex)  # no store=: the run's own
        assert view.graph.example_id == ex and view.run_id == ingested["run"]


def test_a_run_without_a_recorded_store_falls_back_to_out_store_and_says_so():
    from queries.library import open_run_store

    with pytest.raises(StcgError) as e:
        open_run_store("test-no-such-run-xyz", None)
    msg = str(e.value)
    assert "\n" not in msg and "out/store/test-no-such-run-xyz" in msg
    assert "does not record its store" in msg and "--store" in msg
    with pytest.raises(StcgError, match="STCG_STORE"):
        open_run_store("test-no-such-run-xyz", "/nonexistent/elsewhere", option="STCG_STORE")
