"""Sharded runs finish: concurrent `--shard` workers leave one complete run, finalised exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

from ingest.rows import GraphRows, graph_rows
from ingest.runs import RUN_MERGE, finish_run
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter
from stcg_model.testing.synthetic import synthetic_graph
from tests.test_ingest import _counts, _same_rows
from tests.vqa_fixtures import make_vqa_v2_folder


def _ingest_cmd(folder, ckpt, run, store, *extra):
    return [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", ckpt] + [
        "--device", "cpu", "--run-name", run, "--store", str(store), "--quiet", "--batch-size", "2",
        "--deletion-steps", "2", "--perturbations", "center_mask,gaussian_noise", "--top-k", "3", *extra,
    ]  # fmt: skip


def _run(driver, run_id):
    with driver.session() as s:
        return s.run(
            "MATCH (r:Run {uid: $r}) RETURN r.status AS status, r.n_complete AS complete, r.n_failed AS failed, "
            "r.n_total AS total, r.finished_at IS NOT NULL AS finished",
            r=run_id,
        ).single()


def test_two_concurrent_shard_workers_leave_a_complete_run(driver, run_id, tmp_path, tiny_checkpoint):
    """Same graph as one unsharded worker; the run is complete with every shard's counts, said once."""
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=4, questions_per_image=2)
    procs = [
        subprocess.Popen(
            _ingest_cmd(folder, tiny_checkpoint, run_id, tmp_path / "store", "--shard", f"{i}/2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    said = [out for out, _ in outs if "every shard's examples are done; the run is complete (8 complete)" in out]
    assert len(said) == 1, [o for o, _ in outs]  # exactly one worker finalised the run
    r = _run(driver, run_id)
    assert dict(r) == {"status": "complete", "complete": 8, "failed": 0, "total": 8, "finished": True}
    whole = run_id + "-whole"
    try:
        res = subprocess.run(
            _ingest_cmd(folder, tiny_checkpoint, whole, tmp_path / "store2"), capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr[-2000:]
        nodes_a, rels_a, sum_a = _counts(driver, run_id)
        nodes_b, rels_b, sum_b = _counts(driver, whole)
        assert (nodes_a, rels_a) == (nodes_b, rels_b) and nodes_a["Example"] == 8
        # the same values up to float32 noise: a shard batches other questions together than the whole run
        # does, and padded batches of another shape round differently (~1e-6 absolute, measured)
        _same_rows(sum_a.replace(run_id, "RUN"), sum_b.replace(whole, "RUN"))
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=whole).consume()


def test_finalize_says_what_is_missing_then_completes(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=2, questions_per_image=2)
    store = tmp_path / "store"
    first = subprocess.run(
        _ingest_cmd(folder, tiny_checkpoint, run_id, store, "--shard", "0/2"), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert _run(driver, run_id)["status"] == "partial"
    fin = [sys.executable, "-m", "stcg_cli.main", "ingest", "--finalize", "--run-name", run_id]
    res = subprocess.run(fin, capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        f"error: run {run_id} stays partial: 2 of 4 examples are done (2 complete, 0 failed); "
        "run the shards that are missing"
    ], res.stderr
    second = subprocess.run(
        _ingest_cmd(folder, tiny_checkpoint, run_id, store, "--shard", "1/2"), capture_output=True, text=True
    )
    assert second.returncode == 0 and "the run is complete (4 complete)" in second.stdout, second.stderr[-2000:]
    assert dict(_run(driver, run_id)) == {
        "status": "complete",
        "complete": 4,
        "failed": 0,
        "total": 4,
        "finished": True,
    }
    # the worker that finalised the run wrote its statistics (docs/schema.md), over all shards' examples
    stats = "MATCH (:Run {uid: $r})-[:HAS_STATS]->(x:Stats {of: 'run'}) RETURN x.examples AS n"
    with driver.session() as s:
        assert [r["n"] for r in s.run(stats, r=run_id)] == [4]
    res = subprocess.run(fin, capture_output=True, text=True)
    said = res.stdout.strip()
    assert res.returncode == 0 and said.startswith(
        f"run {run_id}: complete (4 complete, 0 failed); statistics rewritten in "
    )
    with driver.session() as s:
        assert [r["n"] for r in s.run(stats, r=run_id)] == [4]
    res = subprocess.run(fin[:-1] + [run_id + "-nope"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == f"error: no run named '{run_id}-nope' in this database " + (
        "(list them: stcg query run runs)"
    )


def test_racing_finishers_finalise_exactly_once(driver, run_id):
    """Eight workers finishing at once over a run whose examples are all written: one finalises."""
    ensure_schema(driver)
    w = Neo4jWriter(driver)
    w.run_query(RUN_MERGE, run_id=run_id, props={"name": run_id, "n_total": 6})
    rows = GraphRows()
    rng = np.random.default_rng(3)
    for i in range(6):
        rows.extend(graph_rows(synthetic_graph(f"ex{i}", rng), run_id, 3))
    w.write(rows)
    results, barrier = [None] * 8, threading.Barrier(8)

    def finish(i):
        barrier.wait()
        results[i] = finish_run(Neo4jWriter(driver), run_id, finished=False)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["finalised"] for r in results) == 1
    assert all(r["status"] == "complete" and r["complete"] == 6 for r in results)
    # one example short of the selection: partial, never finalised
    w.run_query("MATCH (r:Run {uid: $r}) SET r.n_total = 7, r.status = 'running'", r=run_id)
    end = finish_run(w, run_id, finished=False)
    assert (end["status"], end["finalised"]) == ("partial", False)
