"""Ingestion into the real Neo4j: graph contents, idempotence, resume after SIGKILL, bad input, bad arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ingest.pipeline import IngestConfig, run_ingest
from stcg.errors import StcgError
from tests.vqa_fixtures import make_vqa_v2_folder


@pytest.fixture
def vqa_folder(tmp_path):
    return make_vqa_v2_folder(tmp_path / "vqa", n_images=4, questions_per_image=2)


def _cfg(vqa_folder, ckpt, run_id, tmp_path, **kw):
    base = dict(
        dataset=f"vqa-v2:{vqa_folder}",
        split="val2014",
        model=ckpt,
        device="cpu",
        run_name=run_id,
        store=str(tmp_path / "store"),
        batch_size=3,
        deletion_steps=2,
        top_k=3,
    )
    base.update(kw)
    return IngestConfig(**base)


def _counts(driver, run_id):
    with driver.session() as s:
        nodes = s.run("MATCH (n {run_id: $r}) RETURN labels(n)[0] AS l, count(*) AS c ORDER BY l", r=run_id).data()
        rels = s.run("MATCH (n {run_id: $r})-[x]->() RETURN type(x) AS t, count(*) AS c ORDER BY t", r=run_id).data()
        checksum = s.run(
            "MATCH (n {run_id: $r}) WITH n ORDER BY n.uid "
            "OPTIONAL MATCH (n)-[x]->(m) WITH n, x, m ORDER BY n.uid, type(x), m.uid, x.perturbation "
            "RETURN collect([n.uid, type(x), m.uid, x.weight, x.dW, x.js, n.p_clean, n.dp]) AS rows",
            r=run_id,
        ).single()["rows"]
    return {r["l"]: r["c"] for r in nodes}, {r["t"]: r["c"] for r in rels}, json.dumps(checksum, default=str)


FLOAT32_NOISE = 1e-5
"""Absolute difference allowed between two computations of one example that batch it differently
(other questions padded beside it, another torch thread count): float32 rounds differently per kernel
shape (measured ~1e-6 with torch 2.15 on CPU). Computations with the same batches are compared exactly."""


def _same_rows(a: str, b: str) -> None:
    """Two ``_counts`` checksums (run ids replaced): equal strings, floats equal within ``FLOAT32_NOISE``."""
    rows_a, rows_b = json.loads(a), json.loads(b)
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b):
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb):
            if isinstance(x, float) and isinstance(y, float):
                assert x == pytest.approx(y, rel=1e-5, abs=FLOAT32_NOISE), (ra, rb)
            else:
                assert x == y, (ra, rb)


def test_ingest_writes_the_stcg_and_rerun_duplicates_nothing(driver, run_id, vqa_folder, tiny_checkpoint, tmp_path):
    summary = run_ingest(_cfg(vqa_folder, tiny_checkpoint, run_id, tmp_path), progress=False, log=lambda s: None)
    assert summary.examples == 8 and summary.written == 8 and summary.failures == 0
    nodes, rels, checksum = _counts(driver, run_id)
    assert nodes["Example"] == 8 and nodes["Run"] == 1 and nodes["Perturbation"] == 8 * 6
    assert 8 * 3 <= nodes["Region"] <= 8 * 16  # the regions some link touches (16 per example at most)
    with driver.session() as s:
        unlinked = s.run(
            "MATCH (g:Region {run_id: $r}) WHERE NOT EXISTS { (g)<-[:ATTENDS|DW|MOVES]-() } RETURN count(g) AS c",
            r=run_id,
        ).single()["c"]
        assert unlinked == 0
        ex = s.run(
            "MATCH (r:Run {uid: $r})-[:HAS_EXAMPLE]->(e:Example) WHERE e.complete RETURN e ORDER BY e.example_id LIMIT 1",
            r=run_id,
        ).single()["e"]
        n_tok = s.run("MATCH (:Example {uid: $u})-[:HAS_TOKEN]->(t) RETURN count(t) AS c", u=ex["uid"]).single()["c"]
        att = s.run(
            "MATCH (:Example {uid: $u})-[:HAS_TOKEN]->(t)-[a:ATTENDS]->(r:Region) RETURN t.index AS i, r.index AS p, "
            "a.weight AS w, a.rank AS rank ORDER BY i, rank",
            u=ex["uid"],
        ).data()
    assert ex["question_type"] in ("what color is the", "is there a", "what is") and ex["gt_answer"]
    assert len(att) == 3 * n_tok and [a["rank"] for a in att[:3]] == [1, 2, 3]
    # the stored arrays agree with the graph
    from stcg.filestore import FileStore
    from stcg_model.graph import STCGraph

    g = STCGraph.from_parts(*FileStore.open(tmp_path / "store", run_id).read(ex["store_shard"], ex["store_key"]))
    top = np.argsort(-g.W[0], kind="stable")[:3]
    assert [a["p"] for a in att[:3]] == list(top)
    assert att[0]["w"] == pytest.approx(float(g.W[0, top[0]]), rel=1e-6)
    # rerun: nothing duplicated, nothing changed
    again = run_ingest(_cfg(vqa_folder, tiny_checkpoint, run_id, tmp_path), progress=False, log=lambda s: None)
    assert again.skipped == 8 and again.written == 0
    assert _counts(driver, run_id) == (nodes, rels, checksum)


def test_bad_examples_are_recorded_and_the_run_continues(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(
        tmp_path / "bad",
        n_images=9,
        questions_per_image=1,
        bad_images=True,
        questions=["", "x" * 2000, "what ünïcödé 色 is it?", "what'}) MATCH (n) DETACH DELETE n //"],
    )
    summary = run_ingest(
        _cfg(folder, tiny_checkpoint, run_id, tmp_path, deletion_steps=0), progress=False, log=lambda s: None
    )
    failures = [json.loads(line) for line in (tmp_path / "store" / run_id / "failures.jsonl").read_text().splitlines()]
    reasons = {f["example_id"].split(":")[-1]: f["reason"] for f in failures}
    # missing file, truncated file, non-image file, empty question
    assert summary.failures == len(failures) == 4, reasons
    assert any("image not found" in r for r in reasons.values())
    assert sum("not a readable image" in r for r in reasons.values()) == 2
    assert any("empty question" in r for r in reasons.values())
    assert summary.written == summary.examples - 4
    with driver.session() as s:
        failed = s.run("MATCH (e:Example {run_id: $r}) WHERE e.failed RETURN count(e) AS c", r=run_id).single()["c"]
        complete = s.run(
            "MATCH (e:Example {run_id: $r}) WHERE e.complete RETURN e.width AS w, e.height AS h, e.question AS q",
            r=run_id,
        ).data()
        alive = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
    assert failed == 4 and len(complete) == summary.examples - 4 and alive > 0
    sizes = {(c["w"], c["h"]) for c in complete}
    assert (1, 1) in sizes and (6000, 6000) in sizes  # tiny and huge images handled
    assert any(c["q"].startswith("what'})") for c in complete)  # Cypher text stored as data


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(dataset="nope"), "unknown dataset 'nope'"),
        (dict(dataset="vqa-v2:/does/not/exist"), "VQA-v2 folder not found"),
        (dict(perturbations="center_mask,blurr"), "unknown perturbation 'blurr'"),
        (dict(shard="3/2"), "invalid --shard '3/2'"),
        (dict(shard="a/b"), "invalid --shard 'a/b'"),
        (dict(prompt="Question: Answer:"), "the prompt must contain {question} exactly once"),
    ],
)
def test_bad_arguments_fail_before_work(kw, message, tmp_path, vqa_folder, tiny_checkpoint):
    with pytest.raises(StcgError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_ingest(_cfg(vqa_folder, tiny_checkpoint, "never", tmp_path, **kw), progress=False, log=lambda s: None)
    assert not (tmp_path / "store" / "never").exists()


def test_shards_split_without_overlap(vqa_folder):
    from stcg.datasets import open_dataset

    full = [e.example_id for e in open_dataset(f"vqa-v2:{vqa_folder}")]
    parts = [[e.example_id for e in open_dataset(f"vqa-v2:{vqa_folder}", shard=f"{i}/3")] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(full) and len(set(sum(parts, []))) == len(full)


def test_neo4j_down_at_start_is_one_line(tmp_path, vqa_folder, tiny_checkpoint):
    env = {**os.environ, "NEO4J_URI": "bolt://127.0.0.1:1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stcg_cli.main",
            "ingest",
            "--dataset",
            f"vqa-v2:{vqa_folder}",
            "--model",
            tiny_checkpoint,
            "--store",
            str(tmp_path / "s"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: Neo4j is not reachable at bolt://127.0.0.1:1 (ServiceUnavailable); start it with `stcg neo4j start` "
        "or point NEO4J_URI at a running server"
    ]


def test_resume_after_sigkill_equals_uninterrupted_run(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(tmp_path / "big", n_images=12, questions_per_image=3)
    ref_id = run_id + "-ref"
    try:
        run_ingest(
            _cfg(folder, tiny_checkpoint, ref_id, tmp_path, batch_size=2, deletion_steps=0),
            progress=False,
            log=lambda s: None,
        )
        reference = _counts(driver, ref_id)
        cmd = [
            sys.executable,
            "-m",
            "stcg_cli.main",
            "ingest",
            "--dataset",
            f"vqa-v2:{folder}",
            "--split",
            "val2014",
            "--model",
            tiny_checkpoint,
            "--device",
            "cpu",
            "--run-name",
            run_id,
            "--store",
            str(tmp_path / "store"),
            "--batch-size",
            "2",
            "--deletion-steps",
            "0",
            "--top-k",
            "3",
            "--quiet",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline:  # kill once some, but not all, examples are complete
            with driver.session() as s:
                n = s.run("MATCH (e:Example {run_id: $r}) WHERE e.complete RETURN count(e) AS c", r=run_id).single()[
                    "c"
                ]
            if n >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 4 <= n < 36, n
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        resumed = _counts(driver, run_id)
        assert resumed[0] == reference[0] and resumed[1] == reference[1]
        assert resumed[2].replace(run_id, "RID") == reference[2].replace(ref_id, "RID")
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=ref_id).consume()


def test_a_run_name_is_not_reused_for_another_model(driver, run_id, tmp_path, vqa_folder, tiny_checkpoint):
    """Resuming a named run with a retrained checkpoint (same folder, new weights) would mix two models."""
    import shutil

    from safetensors.torch import load_file, save_file

    from stcg_model.families.loading import model_fingerprint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    run_ingest(_cfg(vqa_folder, str(ckpt), run_id, tmp_path, limit=2), progress=False, log=lambda s: None)
    before = model_fingerprint(str(ckpt))
    weights = load_file(ckpt / "model.safetensors")
    name = sorted(weights)[-1]
    weights[name] = weights[name] + 1.0  # "retrained" in place
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    assert model_fingerprint(str(ckpt)) != before
    with pytest.raises(StcgError, match="already holds results of another model"):
        run_ingest(_cfg(vqa_folder, str(ckpt), run_id, tmp_path, limit=2), progress=False, log=lambda s: None)


def test_run_id_changes_with_the_results_version(monkeypatch):
    """Results of a code version that computes other numbers never resume (mix into) an older run."""
    import stcg_model.engine.core as engine_module
    from ingest.pipeline import IngestConfig, make_run_id

    cfg = IngestConfig(dataset="easy-vqa", split="test", limit=4)
    before = make_run_id(cfg, "m", "fp")
    assert make_run_id(cfg, "m", "fp") == before  # same command, same run: reruns resume
    monkeypatch.setattr(engine_module, "RESULTS_VERSION", engine_module.RESULTS_VERSION + 1)
    assert make_run_id(cfg, "m", "fp") != before


def _without_images(folder):
    for image in (folder / "val2014").glob("*.jpg"):
        image.unlink()
    return folder


def test_a_run_whose_every_example_fails_is_failed_and_never_the_default(driver, run_id, tmp_path, tiny_checkpoint):
    """Nothing explained: status 'failed', exit code 1 with one line, and the templates' default skips it."""
    from queries.library import QueryLibrary

    folder = _without_images(make_vqa_v2_folder(tmp_path / "noimg", n_images=3, questions_per_image=1))
    res = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", tiny_checkpoint]
        + ["--device", "cpu", "--run-name", run_id, "--store", str(tmp_path / "store"), "--quiet"]
        + ["--deletion-steps", "0", "--perturbations", "center_mask"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert (
        "Traceback" not in res.stderr
        and len(lines) == 1
        and lines[0].startswith(
            f"error: run {run_id} failed: none of its 3 selected examples could be explained (first: vqa-v2:val2014:"
        )
    ), lines
    assert "image not found" in lines[0] and str(tmp_path / "store" / run_id / "failures.jsonl") in lines[0]
    with driver.session() as s:
        run = s.run("MATCH (r:Run {uid: $r}) RETURN r.status AS status, r.n_failed AS f, r.n_complete AS c", r=run_id)
        assert run.single().data() == {"status": "failed", "f": 3, "c": 0}
    try:  # the templates' default: the latest complete run
        default = QueryLibrary(driver).resolve_run(None)["run_id"]
    except StcgError:  # no complete run in the database at all: then not this one either
        default = None
    assert default != run_id
    # a shard worker whose examples all fail leaves the run 'partial' (finalised elsewhere), and exits 1 too
    shard = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", tiny_checkpoint]
        + ["--device", "cpu", "--run-name", run_id + "-s", "--store", str(tmp_path / "store"), "--quiet"]
        + ["--deletion-steps", "0", "--perturbations", "center_mask", "--shard", "0/2"],
        capture_output=True,
        text=True,
    )
    try:
        assert shard.returncode == 1 and "none of its 2 selected examples" in shard.stderr, shard.stderr
        with driver.session() as s:
            status = s.run("MATCH (r:Run {uid: $r}) RETURN r.status AS s", r=run_id + "-s").single()["s"]
        assert status == "partial"
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=run_id + "-s").consume()


def test_a_run_with_some_failures_is_complete(driver, run_id, tmp_path, tiny_checkpoint):
    folder = make_vqa_v2_folder(tmp_path / "some", n_images=3, questions_per_image=1)
    next((folder / "val2014").glob("*.jpg")).unlink()
    summary = run_ingest(
        _cfg(folder, tiny_checkpoint, run_id, tmp_path, deletion_steps=0, perturbations="center_mask"),
        progress=False,
        log=lambda s: None,
    )
    assert summary.status == "complete" and summary.written == 2 and summary.failures == 1


def test_an_empty_selection_is_refused_before_work(tmp_path, vqa_folder, tiny_checkpoint):
    with pytest.raises(StcgError, match="no question of vqa-v2:.* is selected by these filters"):
        run_ingest(
            _cfg(vqa_folder, tiny_checkpoint, "never", tmp_path, question_type="how many"),
            progress=False,
            log=lambda s: None,
        )
    assert not (tmp_path / "store").exists()
