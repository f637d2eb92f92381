"""`stcg ingest --ray`: Ray Data ingestion into the real Neo4j with a real local Ray and a real tiny model.

The Ray path must give the graph the single-process path gives (same examples, answers, links and
weights, node and relationship counts, failures), finish its run by itself, and resume after its driver
is SIGKILLed with nothing duplicated and no Ray process of it left running, and record an example whose
worker always dies as failed after a bounded number of tries, with the rest of the run complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import ray  # noqa: F401  (the test extra installs it: without it these tests fail, never skip)

from ingest.drivers.ray_data import CPU_ACTOR_CPUS, EXPLAIN_RETRIES, LOST_REASON, READ_CPUS, plan_actors
from ingest.pipeline import IngestConfig, run_ingest
from stcg.errors import StcgError
from tests.ray_worker_faults import CRASH_EXAMPLE, CRASH_LOG, READONLY_STORE
from tests.test_ingest import _counts, _same_rows
from tests.vqa_fixtures import make_vqa_v2_folder


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (start-up is slow): 2 CPUs, as on the CI machines."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


def _cfg(folder, ckpt, run_id, store, **kw):
    base = dict(
        dataset=f"vqa-v2:{folder}",
        split="val2014",
        model=ckpt,
        device="cpu",
        run_name=run_id,
        store=str(store),
        batch_size=3,
        deletion_steps=2,
        top_k=3,
    )
    return IngestConfig(**{**base, **kw})


def _examples(driver, run_id):
    with driver.session() as s:
        return {
            r["id"]: (r["answer"], r["complete"], r["failed"], r["reason"])
            for r in s.run(
                "MATCH (:Run {uid: $r})-[:HAS_EXAMPLE]->(e:Example) RETURN e.example_id AS id, e.answer AS answer, "
                "coalesce(e.complete, false) AS complete, coalesce(e.failed, false) AS failed, e.error AS reason",
                r=run_id,
            )
        }


def _run(driver, run_id):
    with driver.session() as s:
        return s.run(
            "MATCH (r:Run {uid: $r}) RETURN r.status AS status, r.n_complete AS complete, r.n_failed AS failed, "
            "r.n_total AS total, r.finished_at IS NOT NULL AS finished, r.params AS params",
            r=run_id,
        ).single()


def test_ray_path_gives_the_single_process_graph(driver, run_id, tmp_path, tiny_checkpoint, local_ray):
    """Same examples, answers, failures, link weights and counts; the run complete; a rerun changes nothing."""
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=5, questions_per_image=2)
    missing = sorted((folder / "val2014").glob("*.jpg"))[0]
    missing.unlink()  # its 2 questions fail in both paths, with the same reason
    ref_id = run_id + "-ref"
    try:
        ref = run_ingest(_cfg(folder, tiny_checkpoint, ref_id, tmp_path / "s1"), progress=False, log=lambda s: None)
        lines = []
        summary = run_ingest(
            _cfg(folder, tiny_checkpoint, run_id, tmp_path / "s2", ray="local", workers=2),
            progress=False,
            log=lines.append,
        )
        assert any("2 model actors" in line for line in lines), lines
        assert (summary.examples, summary.written, summary.failures, summary.status) == (10, 8, 2, "complete")
        assert (summary.nodes, summary.relationships) == (ref.nodes, ref.relationships)
        assert sorted(summary.failed_ids) == sorted(ref.failed_ids)
        ray_counts, ref_counts = _counts(driver, run_id), _counts(driver, ref_id)
        assert ray_counts[:2] == ref_counts[:2]
        _same_rows(ray_counts[2].replace(run_id, "RID"), ref_counts[2].replace(ref_id, "RID"))
        ray_examples, ref_examples = _examples(driver, run_id), _examples(driver, ref_id)
        assert ray_examples == ref_examples
        assert sum(failed for _, _, failed, _ in ray_examples.values()) == 2
        assert all("image not found" in reason for _, _, failed, reason in ray_examples.values() if failed)
        run, ref_run = _run(driver, run_id), _run(driver, ref_id)
        assert (run["status"], run["complete"], run["failed"], run["total"], run["finished"]) == (
            "complete",
            8,
            2,
            10,
            True,
        )
        assert run["params"] == ref_run["params"]  # recorded by the actors as the single process records it
        store = tmp_path / "s2" / run_id
        failures = [json.loads(line) for line in (store / "failures.jsonl").read_text().splitlines()]
        assert sorted(f["example_id"] for f in failures) == sorted(ref.failed_ids)
        assert json.loads((store / "run.json").read_text())["params"] == ref_run["params"]
        # the stored arrays agree with the graph: every Example points at a readable record of its own
        from stcg.filestore import FileStore
        from stcg_model.graph import STCGraph

        fs = FileStore.open(tmp_path / "s2", run_id)
        with driver.session() as s:
            refs = s.run(
                "MATCH (e:Example {run_id: $r}) WHERE e.complete RETURN e.example_id AS id, e.answer AS answer, "
                "e.store_shard AS shard, e.store_key AS key",
                r=run_id,
            ).data()
        assert len(refs) == 8
        for r in refs:
            g = STCGraph.from_parts(*fs.read(r["shard"], r["key"]))
            assert (g.example_id, g.answer) == (r["id"], r["answer"])
        # a rerun resumes: everything is done, nothing is duplicated or changed
        again = run_ingest(
            _cfg(folder, tiny_checkpoint, run_id, tmp_path / "s2", ray="local", workers=2),
            progress=False,
            log=lambda s: None,
        )
        assert (again.skipped, again.written) == (8, 0)
        assert _counts(driver, run_id) == ray_counts
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=ref_id).consume()


def test_killed_ray_driver_resumes_with_nothing_duplicated(driver, run_id, tmp_path, tiny_checkpoint):
    """SIGKILL of `stcg ingest --ray` mid-run: its local Ray goes with it; the same command completes the run,
    and the graph equals an uninterrupted single-process run's."""
    folder = make_vqa_v2_folder(tmp_path / "big", n_images=10, questions_per_image=2)
    ref_id = run_id + "-ref"
    cmd = [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", tiny_checkpoint]
    cmd += ["--device", "cpu", "--run-name", run_id, "--store", str(tmp_path / "store"), "--batch-size", "2"]
    cmd += ["--deletion-steps", "0", "--top-k", "3", "--quiet", "--ray", "--workers", "2"]
    try:
        run_ingest(
            _cfg(folder, tiny_checkpoint, ref_id, tmp_path / "ref", batch_size=2, deletion_steps=0),
            progress=False,
            log=lambda s: None,
        )
        reference = _counts(driver, ref_id)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, n = time.time() + 300, 0
        while time.time() < deadline and proc.poll() is None:  # kill once some, but not all, are complete
            with driver.session() as s:
                n = s.run("MATCH (e:Example {run_id: $r}) WHERE e.complete RETURN count(e) AS c", r=run_id).single()
                n = n["c"]
            if n >= 4:
                break
            time.sleep(0.05)
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 4 <= n < 20, n
        assert any(p.name() == "raylet" for p in ray_processes)
        deadline = time.time() + 90  # Ray's reaper ends the local Ray; its agents notice the raylet is gone
        while time.time() < deadline:
            left = [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not left:
                break
            time.sleep(1)
        assert not left, [(p.pid, p.name()) for p in left]
        with driver.session() as s:
            status = s.run("MATCH (r:Run {uid: $r}) RETURN r.status AS s", r=run_id).single()["s"]
        assert status == "running"  # the killed driver never finished the run
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        said = re.search(r"20 examples selected, (\d+) already complete, (\d+) written, 0 failed", done.stdout)
        assert said and int(said[1]) >= n and int(said[1]) + int(said[2]) == 20, done.stdout
        resumed = _counts(driver, run_id)
        assert resumed[:2] == reference[:2]
        _same_rows(resumed[2].replace(run_id, "RID"), reference[2].replace(ref_id, "RID"))
        run = _run(driver, run_id)
        assert (run["status"], run["complete"], run["failed"]) == ("complete", 20, 0)
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=ref_id).consume()


def test_actor_placement_follows_the_cluster():
    """One model per GPU (all GPUs, or --workers); CPU actors with a fractional CPU when there is no GPU."""
    gpu = plan_actors("auto", None, {"CPU": 64.0, "GPU": 8.0}, nodes=2)
    assert (gpu.size, gpu.gpus, gpu.cpus, gpu.device) == (8, 1, 1.0, "auto")
    assert plan_actors("cuda", 3, {"CPU": 64.0, "GPU": 8.0}, nodes=2).size == 3
    cpu = plan_actors("auto", None, {"CPU": 2.0}, nodes=1)
    assert (cpu.size, cpu.gpus, cpu.threads, cpu.device) == (1, 0, 2, "cpu") and 0 < cpu.cpus < 1
    assert plan_actors("cpu", None, {"CPU": 64.0, "GPU": 8.0}, nodes=2).gpus == 0  # --device cpu: no GPU actors
    assert plan_actors("auto", 2, {"CPU": 2.0}, nodes=1).threads == 1
    assert CPU_ACTOR_CPUS != READ_CPUS  # equal resources would make Ray Data fuse reading into the actors
    with pytest.raises(StcgError, match="the Ray cluster has no GPU"):
        plan_actors("cuda", None, {"CPU": 2.0}, nodes=1)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ray", "--sink", "csv:out/x"], "error: --ray writes to Neo4j only; --sink csv:out/x works without --ray"),
        (["--workers", "2"], "error: --workers sets the size of the Ray actor pool; use it with --ray"),
        (["--ray", "--workers", "0"], "error: --workers 0 is invalid; allowed: an integer >= 1"),
    ],
)
def test_bad_ray_arguments_are_one_line(args, message, tmp_path):
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=1, questions_per_image=1)
    res = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--quiet", *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [message], res.stderr


def test_without_the_ray_extra_the_error_names_it(tmp_path, tiny_checkpoint):
    """Ray not importable (as without the extra): one line naming `pip install "stcg[ray]"`, before any work."""
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=1, questions_per_image=1)
    code = "import sys; sys.modules['ray'] = None; from stcg_cli.main import main; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, "ingest", "--dataset", f"vqa-v2:{folder}", "--model", tiny_checkpoint]
        + ["--store", str(tmp_path / "store"), "--quiet", "--ray"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        'error: --ray needs Ray Data, which is not installed (ray): pip install "stcg[ray]"'
    ]
    assert not (tmp_path / "store").exists()


def _cli_with_faults(args: list, faults: dict, limit: float = 600):
    """`stcg ingest ARGS --quiet --ray` in a subprocess whose Ray workers get ``faults`` (tests/ray_worker_faults.py,
    through Ray's worker_process_setup_hook; the runtime_env reaches the command's own ray.init as `ray job submit`
    passes it). Returns (exit code, stdout, stderr, seconds, {pid: (process, name)} of every process under it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runtime_env = {"worker_process_setup_hook": "tests.ray_worker_faults.setup", "env_vars": faults}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    env["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps({"runtime_env": runtime_env})
    cmd = [sys.executable, "-m", "stcg_cli.main", "ingest", *args, "--quiet", "--ray"]
    started, seen = time.time(), {}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=root)
        while proc.poll() is None and time.time() - started < limit:  # its Ray processes, as they come
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:  # it ended meanwhile
                children = []
            for p in children:
                try:  # named again each time: a child first seen between its fork and its exec is still
                    # "python3" then (seen under load: the raylet was missed), and one that ends meanwhile
                    # must not hide the others
                    seen[p.pid] = (p, p.name())
                except psutil.Error:
                    pass
            time.sleep(0.5)
        took = time.time() - started
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert took < limit, f"`stcg ingest --ray` still running after {limit} s: {stderr[-2000:]}"
    return proc.returncode, stdout, stderr, took, seen


def _no_ray_left(seen: dict) -> None:
    """The command started a local Ray (a raylet among its processes), and none of them is left."""
    assert "raylet" in {name for _, name in seen.values()}, seen
    deadline = time.time() + 60  # the command shut its local Ray down; its agents exit once the raylet is gone
    while time.time() < deadline:
        left = [(p.pid, name) for p, name in seen.values() if _alive(p)]
        if not left:
            return
        time.sleep(1)
    assert not left, left


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _args(folder, ckpt, run_id, store, *more):
    args = ["--dataset", f"vqa-v2:{folder}", "--model", ckpt, "--device", "cpu", "--run-name", run_id]
    return args + ["--store", str(store), "--deletion-steps", "0", "--top-k", "3", *more]


def test_a_worker_error_reaches_the_user_as_one_line(run_id, tmp_path, tiny_checkpoint):
    """A StcgError raised in a model actor (the store is read-only where the workers run, as on a cluster whose
    --store is not shared; the driver could write it) stops `stcg ingest --ray` with its one line, not Ray's
    wrapped traceback, and leaves no Ray process behind."""
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=2, questions_per_image=1)
    store = tmp_path / "store"
    code, _, stderr, _, seen = _cli_with_faults(
        _args(folder, tiny_checkpoint, run_id, store, "--workers", "1"), {READONLY_STORE: "1"}
    )
    assert code == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"error: cannot write a shard in the file store {store / run_id}: Read-only file system; check --store"
    ), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    _no_ray_left(seen)


def test_an_example_that_always_kills_its_worker_fails_alone(driver, run_id, tmp_path, tiny_checkpoint):
    """One example SIGKILLs its Ray worker on every try (no Python exception): `stcg ingest --ray` with ONE
    model actor (the pool an actor dead for good would stall) tries its batch a bounded number of times, then
    the lost batch's examples one by one, records only that example failed (Neo4j and failures.jsonl),
    finishes the run `complete` with its usual summary and leaves no Ray process behind."""
    from stcg.datasets import open_dataset

    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=3, questions_per_image=2)
    ids = [ex.example_id for ex in open_dataset(f"vqa-v2:{folder}", split="val2014")]
    victim, crashes = ids[1], tmp_path / "crashes.txt"  # in the first batch of 3, with two innocent examples
    store = tmp_path / "store"
    code, stdout, stderr, took, seen = _cli_with_faults(
        _args(folder, tiny_checkpoint, run_id, store, "--batch-size", "3", "--workers", "1"),
        {CRASH_EXAMPLE: victim, CRASH_LOG: str(crashes)},
    )
    assert code == 0, stderr[-3000:]
    assert "6 examples selected, 0 already complete, 5 written, 1 failed" in stdout, stdout
    assert f"run {run_id}: 3 examples lost with a Ray worker that died; trying them one by one" in stdout, stdout
    tries = [line.split()[1].split(",") for line in crashes.read_text().splitlines()]
    assert tries.count([victim]) == 1 + EXPLAIN_RETRIES, tries  # alone, in the second pass: the bound
    batched = [t for t in tries if t != [victim]]
    assert 1 <= len(batched) <= 1 + EXPLAIN_RETRIES and all(len(t) == 3 for t in batched), tries
    run = _run(driver, run_id)
    assert (run["status"], run["complete"], run["failed"], run["total"], run["finished"]) == ("complete", 5, 1, 6, True)
    examples = _examples(driver, run_id)
    assert set(examples) == set(ids)
    assert examples[victim][1:] == (False, True, LOST_REASON)
    assert all(complete and not failed for i, (_, complete, failed, _) in examples.items() if i != victim)
    failures = [json.loads(line) for line in (store / run_id / "failures.jsonl").read_text().splitlines()]
    assert [(f["example_id"], f["reason"]) for f in failures] == [(victim, LOST_REASON)], failures
    _no_ray_left(seen)
    print(f"{took:.0f} s, {len(tries)} worker deaths")
