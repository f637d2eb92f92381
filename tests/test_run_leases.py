"""Writer leases (ingest.lease): a run's statistics are never stale, and two commands never explain the
same examples at once.

The paths of issue 22 item 5, with real `stcg ingest` commands (a tiny BLIP-2, VQA-v2-format fixtures
with missing images) against the real Neo4j: a retry of failures, `--finalize` while that retry runs
(refused), the retry SIGKILLed and then finalised, the retry run to its end, a late `--shard`. After each,
every whole-run template (the cases of tests/test_run_stats.py) answers from the run's statistics exactly
what the same template computes over the graph with the statistics removed (in a transaction rolled
back), and the statistics count every complete example of the graph.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from ingest.lease import Lease
from ingest.pipeline import IngestConfig, Neo4jSink, claim_run, finalize_run, finish_run, run_ingest
from ingest.schema import ensure_schema
from ingest.stats import DROP_STATS, write_run_stats
from ingest.writer import Neo4jWriter
from queries.library import QueryLibrary, load_template, plain_value
from stcg.errors import StcgError
from stcg_model.testing.synthetic import synthetic_graph
from tests.test_queries import _write_run
from tests.test_run_stats import CASES, _same
from tests.test_shards import _ingest_cmd
from tests.vqa_fixtures import make_vqa_v2_folder


def _cmd(folder, ckpt, run, store, *extra):
    """tests/test_shards.py's command, one example per batch (so a retry can be caught mid-way)."""
    return _ingest_cmd(folder, ckpt, run, store, "--batch-size", "1", *extra)


def _state(driver, run):
    with driver.session() as s:
        return s.run(
            "MATCH (r:Run {uid: $r}) "
            "RETURN r.status AS status, r.n_complete AS n_complete, "
            "COUNT { (r)-[:HAS_EXAMPLE]->(e:Example) WHERE e.complete } AS graph_complete, "
            "[(r)-[:HAS_STATS]->(x:Stats {of: 'run'}) | x.examples][0] AS stats_examples, "
            "COUNT { (r)-[:HAS_WRITER]->() } AS writers",
            r=run,
        ).single()


def _from_graph(driver, name: str, params: dict) -> list[dict]:
    """Template ``name`` computed over the graph: the run's statistics removed in a transaction that is
    rolled back, so the template's fallback aggregates the examples themselves. Rows as ``QueryLibrary.run``
    gives them (through a DataFrame)."""
    t = load_template(name)
    bound = t.bind(**params)
    with driver.session() as s:
        tx = s.begin_transaction()
        try:
            for run in {v for k, v in bound.items() if k in ("run_id", "run_a", "run_b") and v}:
                tx.run(DROP_STATS, run_id=run).consume()
            result = tx.run(t.cypher, bound)
            keys = result.keys()
            rows = [[plain_value(r[k]) for k in keys] for r in result]
        finally:
            tx.rollback()
    return pd.DataFrame(rows, columns=list(keys)).to_dict("records")


def _check_templates_equal_the_graph(driver, run: str) -> None:
    """Every whole-run template, every case: the default path (statistics when the run has them) equals
    the aggregate over the graph; and the statistics, when present, count what the graph holds."""
    st = _state(driver, run)
    if st["stats_examples"] is not None:
        assert st["stats_examples"] == st["graph_complete"], dict(st)
    lib = QueryLibrary(driver)
    for name, cases in CASES.items():
        for kw in cases:
            params = {"run_id": run, **kw}
            want = _from_graph(driver, name, params)
            try:
                got = lib.run(name, **params).to_dict("records")
            except StcgError as e:  # these runs have no other methods: said, where the graph has no rows
                assert "has no explanations of method" in str(e) and want == [], (name, kw)
                continue
            assert len(got) == len(want), (name, kw)
            assert all(_same(a, b) for a, b in zip(got, want)), (name, kw, got[:3], want[:3])
    summary = lib.run("perturbation_summary", run_id=run)
    if st["status"] == "complete":
        assert set(summary["examples"]) == {st["graph_complete"]}


def _wait(pred, timeout=300.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(0.02)
    return False


def test_statistics_follow_every_command_that_writes_into_a_run(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=6, questions_per_image=2)
    images = sorted((folder / "val2014").glob("*.jpg"))
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for p in images[:4]:  # 8 of the 12 questions lose their image
        shutil.move(p, hidden / p.name)
    store = tmp_path / "store"
    cmd = _cmd(folder, tiny_checkpoint, run_id, store)

    # 1. complete with 4 complete and 8 failed examples: statistics over the 4
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    st = _state(driver, run_id)
    assert (st["status"], st["graph_complete"], st["stats_examples"], st["writers"]) == ("complete", 4, 4, 0)
    _check_templates_equal_the_graph(driver, run_id)

    # 2. the images are back; the same command retries the failures. While it runs (frozen with SIGSTOP
    # while we look), --finalize is refused (it writes into the run), the statistics are gone, and the
    # templates read the graph
    for p in hidden.iterdir():
        shutil.move(p, folder / "val2014" / p.name)
    retry = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: _state(driver, run_id)["graph_complete"] >= 6, proc=retry), "the retry wrote nothing"
        assert retry.poll() is None, "the retry ended before it could be killed: give it more examples"
        retry.send_signal(signal.SIGSTOP)  # frozen mid-run (its lease held): the graph holds still to compare
        with pytest.raises(StcgError) as refused:
            finalize_run(run_id)
        assert refused.value.exit_code == 1
        assert f"run {run_id!r} is being written by another command: pid {retry.pid} on " in str(refused.value)
        assert "\n" not in str(refused.value)
        st = _state(driver, run_id)
        assert (st["status"], st["stats_examples"], st["writers"]) == ("running", None, 1)
        _check_templates_equal_the_graph(driver, run_id)
    finally:
        retry.send_signal(signal.SIGKILL)
        retry.wait()

    # 3. the retry was killed part-way: its lease died with it, so --finalize goes ahead, over what the
    # graph holds now (more complete examples than the first statistics counted). Killed between an
    # example's subgraph and its completion marker, that example is neither complete nor failed: the run
    # then stays partial, without statistics (the templates read the graph), until the command is rerun
    killed_at = _state(driver, run_id)["graph_complete"]
    assert 6 <= killed_at < 12
    end = finalize_run(run_id)
    st = _state(driver, run_id)
    assert st["writers"] == 0 and end["complete"] == killed_at
    if end["failed"] + end["complete"] == 12:
        assert end["status"] == "complete" and end["stats"]["written"] and st["stats_examples"] == killed_at
    else:
        assert end["status"] == "partial" and st["stats_examples"] is None
    _check_templates_equal_the_graph(driver, run_id)

    # 4. the retry again, to its end
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    st = _state(driver, run_id)
    assert (st["status"], st["graph_complete"], st["stats_examples"], st["writers"]) == ("complete", 12, 12, 0)
    _check_templates_equal_the_graph(driver, run_id)

    # 5. a late --shard into the complete run (nothing left to explain: it claims and finishes): the run
    # stays complete with current statistics
    late = subprocess.run(cmd + ["--shard", "1/3"], capture_output=True, text=True, timeout=600)
    assert late.returncode == 0, late.stderr[-2000:]
    st = _state(driver, run_id)
    assert (st["status"], st["stats_examples"], st["writers"]) == ("complete", 12, 0)
    _check_templates_equal_the_graph(driver, run_id)


def test_a_late_shard_completes_a_sharded_run_with_current_statistics(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=2, questions_per_image=2)
    cmd = _cmd(folder, tiny_checkpoint, run_id, tmp_path / "store")
    first = subprocess.run(cmd + ["--shard", "0/2"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    st = _state(driver, run_id)
    assert (st["status"], st["stats_examples"]) == ("partial", None)
    _check_templates_equal_the_graph(driver, run_id)
    second = subprocess.run(cmd + ["--shard", "1/2"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    st = _state(driver, run_id)
    assert (st["status"], st["graph_complete"], st["stats_examples"], st["writers"]) == ("complete", 4, 4, 0)
    _check_templates_equal_the_graph(driver, run_id)


def test_a_second_command_on_the_same_examples_is_refused_while_the_first_runs(
    driver, run_id, tmp_path, tiny_checkpoint
):
    """docs/ingest.md: two commands of one run that would explain the same examples (the same command
    twice, or overlapping shards) - the second is refused in one line before any model work; the first
    completes the run."""
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=20, questions_per_image=2)
    cmd = _cmd(folder, tiny_checkpoint, run_id, tmp_path / "store")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: (_state(driver, run_id) or {"writers": 0})["writers"] == 1, proc=first)
        for shard in (None, "0/2"):
            cfg = IngestConfig(
                dataset=f"vqa-v2:{folder}", model=tiny_checkpoint, device="cpu", run_name=run_id,
                store=str(tmp_path / "store"), batch_size=1, deletion_steps=2, top_k=3,
                perturbations="center_mask,gaussian_noise", shard=shard,
            )  # fmt: skip
            with pytest.raises(StcgError) as refused:
                run_ingest(cfg, progress=False, log=lambda s: None)
            said = str(refused.value)
            assert said.startswith(f"run {run_id!r} is being written by another command (all its examples; ")
            assert f"pid {first.pid} on " in said and "\n" not in said
            assert first.poll() is None, "the first command ended before the second was refused"
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    st = _state(driver, run_id)
    assert (st["status"], st["graph_complete"], st["stats_examples"], st["writers"]) == ("complete", 40, 40, 0)


def test_shards_of_one_split_run_side_by_side_and_overlapping_ones_do_not(driver, run_id, tmp_path):
    """The lease rule itself, on the real server: shards 0/2 and 1/2 hold leases at once; 0/3 overlaps
    both and is refused; a dead holder (its process gone) is no obstacle and is cleared."""
    ensure_schema(driver)
    w = Neo4jWriter(driver)
    props = {"name": run_id, "n_total": 4}
    a, b = Lease.new("0/2"), Lease.new("1/2")
    claim_run(w, run_id, "ident", str(tmp_path), props, a)
    claim_run(w, run_id, "ident", str(tmp_path), props, b)
    with pytest.raises(StcgError, match=r"is being written by another command \(shard 0/2; pid \d+ on "):
        claim_run(w, run_id, "ident", str(tmp_path), props, Lease.new("0/3"))
    # a lease whose process has ended is dead at once
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Lease(uid="dead-" + run_id, host=a.host, pid=int(gone.stdout), shard=None)
    w.run_query("MATCH (w:Writer) WHERE w.uid IN $u DETACH DELETE w", u=[a.uid, b.uid])
    claim_run(w, run_id, "ident", str(tmp_path), props, dead)
    fresh = Lease.new(None)
    claim_run(w, run_id, "ident", str(tmp_path), props, fresh)
    uids = {r["uid"] for r in w.run_query("MATCH (:Run {uid: $r})-[:HAS_WRITER]->(x) RETURN x.uid AS uid", r=run_id)}
    assert uids == {fresh.uid}
    end = finish_run(w, run_id, finished=True, lease_uid=fresh.uid)
    assert end["status"] == "failed" and w.run_query("MATCH (x:Writer {run_id: $r}) RETURN x", r=run_id) == []


def test_a_live_lease_holds_back_finish_and_statistics_and_a_lost_one_is_taken_again(driver, run_id, tmp_path):
    """Another command's live lease: a finishing command leaves the run 'running' and writes no
    statistics; a heartbeat whose lease was cleared takes it again and drops statistics written meanwhile."""
    ensure_schema(driver)
    rng = np.random.default_rng(5)
    _write_run(driver, run_id, [synthetic_graph(f"ex{i}", rng) for i in range(5)])
    w = Neo4jWriter(driver)
    sink = Neo4jSink(driver)
    mine, other = Lease.new("0/2"), Lease.new("1/2")
    sink.claim_run(run_id, "ident", str(tmp_path), {"name": run_id}, lease=mine)
    claim_run(w, run_id, "ident", str(tmp_path), {"name": run_id}, other)
    end = sink.finish(run_id, True, lease_uid=mine.uid)
    assert (end["status"], end["finalised"], "stats" in end) == ("running", False, False)
    assert write_run_stats(w, run_id, force=True)["written"] is False  # held: no statistics while it writes
    end = finish_run(w, run_id, finished=True, lease_uid=other.uid)
    assert end["status"] == "complete" and end["stats"]["written"]
    # a heartbeat of a lease cleared meanwhile (judged dead): taken again, the run 'running', no statistics
    sink.claim_run(run_id, "ident", str(tmp_path), {"name": run_id}, lease=mine)
    w.run_query("MATCH (w:Writer {uid: $u}) DETACH DELETE w", u=mine.uid)
    finish_run(w, run_id, finished=True)
    assert _state(driver, run_id)["stats_examples"] == 5
    sink.heartbeat(run_id, mine.uid)
    st = _state(driver, run_id)
    assert (st["status"], st["stats_examples"], st["writers"]) == ("running", None, 1)
    sink.release(run_id, mine.uid)
    assert _state(driver, run_id)["writers"] == 0
