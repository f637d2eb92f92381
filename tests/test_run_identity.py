"""Run identity and run names against the real Neo4j: the identity check and the Run creation are one
atomic step (two commands racing for one name: exactly one wins, nothing mixed); names are kept as
given, colliding and folder-unsafe names are refused; the Run records where its file store is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from ingest.pipeline import IngestConfig, claim_run, run_ingest
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter
from stcg.errors import StcgError
from tests.vqa_fixtures import make_vqa_v2_folder


@pytest.fixture(scope="module")
def vqa_folder(tmp_path_factory):
    return make_vqa_v2_folder(tmp_path_factory.mktemp("vqa") / "vqa", n_images=2, questions_per_image=1)


@pytest.fixture
def names(driver):
    """Run names made by a test; every node of those runs is deleted afterwards."""
    made: list[str] = []
    yield made
    with driver.session() as s:
        for rid in made:
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid).consume()


def _cfg(folder, ckpt, name, store, **kw):
    base = dict(
        dataset=f"vqa-v2:{folder}",
        model=ckpt,
        device="cpu",
        run_name=name,
        store=str(store),
        perturbations="center_mask,color_shift",
        deletion_steps=0,
        top_k=3,
    )
    return IngestConfig(**{**base, **kw})


def _ingest(cfg, settings=None):
    return run_ingest(cfg, settings, progress=False, log=lambda s: None)


def _runs(driver, uid):
    with driver.session() as s:
        return s.run("MATCH (r:Run {uid: $u}) RETURN properties(r) AS r", u=uid).data()


def test_racing_claims_of_one_name_let_exactly_one_identity_in(driver, names):
    """Eight commands claim the same new run name at the same moment, each with another identity."""
    ensure_schema(driver)
    writer = Neo4jWriter(driver)
    for _ in range(3):
        name = f"race-{uuid.uuid4().hex[:8]}"
        names.append(name)
        barrier = threading.Barrier(8)
        outcome: dict[int, object] = {}

        def claim(i, name=name, barrier=barrier, outcome=outcome):
            barrier.wait()
            try:
                outcome[i] = claim_run(writer, name, f"identity-{i}", "/tmp/store", {"n_selected": i})
            except StcgError as e:
                outcome[i] = e

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, v in outcome.items() if not isinstance(v, Exception)]
        assert len(winners) == 1, outcome
        for i, v in outcome.items():
            if i not in winners:
                assert "already holds results of another model or other parameters" in str(v)
        (run,) = _runs(driver, name)
        assert run["r"]["identity"] == f"identity-{winners[0]}" and run["r"]["n_selected"] == winners[0]


def test_two_ingests_of_one_name_with_other_parameters_one_wins_nothing_mixed(
    driver, names, vqa_folder, tiny_checkpoint, tmp_path, monkeypatch
):
    """Both commands pass every check and reach the claim together; one is refused before any model work."""
    import ingest.sinks.neo4j as neo4j_sink  # where the Bolt sink looks the claim up

    name = f"duel-{uuid.uuid4().hex[:8]}"
    names.append(name)
    barrier = threading.Barrier(2)
    real_claim = neo4j_sink.claim_run

    calls = []

    def claim_together(*a, **k):
        calls.append(1)
        barrier.wait(timeout=60)
        return real_claim(*a, **k)

    monkeypatch.setattr(neo4j_sink, "claim_run", claim_together)
    outcome: dict[int, object] = {}

    def ingest(top_k):
        try:
            outcome[top_k] = _ingest(_cfg(vqa_folder, tiny_checkpoint, name, tmp_path / "store", top_k=top_k))
        except StcgError as e:
            outcome[top_k] = e

    threads = [threading.Thread(target=ingest, args=(k,)) for k in (2, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [k for k, v in outcome.items() if not isinstance(v, Exception)]
    assert len(calls) == 2  # both reached the claim together (the patch is where the sink looks it up)
    assert len(won) == 1, outcome
    (lost,) = set(outcome) - set(won)
    assert "already holds results of another model or other parameters" in str(outcome[lost])
    k = won[0]
    (run,) = _runs(driver, name)
    assert run["r"]["top_k"] == k and json.loads(run["r"]["params"])["top_k"] == k
    with driver.session() as s:
        ranks = s.run(
            "MATCH (:Run {uid: $u})-[:HAS_EXAMPLE]->(e)-[:HAS_TOKEN]->(t)-[a:ATTENDS]->() "
            "RETURN e.uid AS e, t.uid AS t, max(a.rank) AS k, count(a) AS n",
            u=name,
        ).data()
    assert ranks and {(r["k"], r["n"]) for r in ranks} == {(k, k)}  # every token has the winner's k links only
    shards = list((tmp_path / "store" / name / "shards").glob("part-*.safetensors"))
    assert len(shards) == 1  # only the winner's batch of arrays


def test_two_processes_with_one_name_and_other_parameters(driver, names, vqa_folder, tiny_checkpoint, tmp_path):
    """The same race between two real ``stcg ingest`` processes started together."""
    name = f"proc-{uuid.uuid4().hex[:8]}"
    names.append(name)
    base = [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{vqa_folder}"]
    base += ["--model", tiny_checkpoint, "--device", "cpu", "--run-name", name, "--store", str(tmp_path / "store")]
    base += ["--perturbations", "center_mask", "--deletion-steps", "0", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {
        seed: subprocess.Popen(
            base + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for seed in (1, 2)
    }
    results = {seed: (p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for seed, p in procs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(seed for seed, (code, _, _) in results.items() if code == 0)
    loser_err = next(err for code, _, err in results.values() if code == 2)
    assert loser_err.strip().splitlines() == [
        f"error: run {name!r} already holds results of another model or other parameters; "
        "choose another --run-name (resuming it would mix the two)"
    ]
    (run,) = _runs(driver, name)
    assert json.loads(run["r"]["params"])["seed"] == winner and run["r"]["status"] == "complete"
    with driver.session() as s:
        n = s.run("MATCH (:Run {uid: $u})-[:HAS_EXAMPLE]->(e) WHERE e.complete RETURN count(e) AS c", u=name).single()
    assert n["c"] == 2


def test_names_are_kept_as_given_and_never_merged(driver, names, vqa_folder, tiny_checkpoint, tmp_path):
    """Names that the old slug made equal (quotes vs spaces, a long common prefix) stay distinct runs;
    non-ASCII letters stay; the run id is the name."""
    tag = uuid.uuid4().hex[:8]
    long = "x" * 90
    given = [f"a'b\"c-{tag}", f"a b c-{tag}", f"färg 色-{tag}", f"{long}-{tag}-1", f"{long}-{tag}-2"]
    names.extend(given)
    summaries = [_ingest(_cfg(vqa_folder, tiny_checkpoint, n, tmp_path / "store", limit=1)) for n in given]
    assert [s.run_id for s in summaries] == given
    assert all(s.written == 1 and s.skipped == 0 for s in summaries)  # none resumed another
    for n in given:
        (run,) = _runs(driver, n)
        assert run["r"]["name"] == n and run["r"]["run_id"] == n and run["r"]["status"] == "complete"
        assert (tmp_path / "store" / n / "run.json").is_file()


def test_a_name_equal_up_to_case_or_normalisation_is_refused(driver, names, vqa_folder, tiny_checkpoint, tmp_path):
    tag = uuid.uuid4().hex[:8]
    first, same_case, nfd = f"Ab-{tag}", f"ab-{tag}", f"Cafe\u0301-{tag}"
    names.extend([first, same_case, nfd, f"Caf\u00e9-{tag}"])
    _ingest(_cfg(vqa_folder, tiny_checkpoint, first, tmp_path / "store", limit=1))
    with pytest.raises(StcgError, match=f"run name '{same_case}' collides with the existing run '{first}'"):
        _ingest(_cfg(vqa_folder, tiny_checkpoint, same_case, tmp_path / "store", limit=1))
    assert _runs(driver, same_case) == [] and not (tmp_path / "store" / same_case).exists()
    _ingest(_cfg(vqa_folder, tiny_checkpoint, nfd, tmp_path / "store", limit=1))
    with pytest.raises(StcgError, match="collides with the existing run"):
        _ingest(_cfg(vqa_folder, tiny_checkpoint, f"CAF\u00c9-{tag}", tmp_path / "store", limit=1))
    # the same name again resumes (nothing to do), it is not a collision with itself
    again = _ingest(_cfg(vqa_folder, tiny_checkpoint, first, tmp_path / "store", limit=1))
    assert again.skipped == 1 and again.written == 0


def test_racing_names_that_differ_by_case_let_one_in(driver, names):
    """``Run.name_key`` is unique: two new names equal up to case claimed at once cannot both be created."""
    ensure_schema(driver)
    writer = Neo4jWriter(driver)
    tag = uuid.uuid4().hex[:8]
    pair = [f"Case-{tag}", f"cASE-{tag}"]
    names.extend(pair)
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def claim(name):
        barrier.wait()
        try:
            outcome[name] = claim_run(writer, name, "same-identity", "/tmp/store", {})
        except StcgError as e:
            outcome[name] = e

    threads = [threading.Thread(target=claim, args=(n,)) for n in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [v for v in outcome.values() if isinstance(v, Exception)]
    assert len(errors) == 1 and "collides with the existing run" in str(errors[0]), outcome
    assert sum(len(_runs(driver, n)) for n in pair) == 1


def test_the_run_records_its_store(driver, names, vqa_folder, tiny_checkpoint, tmp_path, monkeypatch, neo4j_settings):
    name = f"store-{uuid.uuid4().hex[:8]}"
    names.append(name)
    monkeypatch.chdir(
        tmp_path
    )  # a relative --store; the server's settings were resolved before (its home is cwd-relative)
    _ingest(_cfg(vqa_folder, tiny_checkpoint, name, "rel/store", limit=1), neo4j_settings)
    (run,) = _runs(driver, name)
    root = tmp_path / "rel" / "store"
    assert run["r"]["store"] == str(root.resolve())
    info = json.loads((root / name / "run.json").read_text())
    assert info["run_id"] == name and info["store"] == str(root.resolve()) and "params" in info
    # resuming from another store keeps the recorded one (where the arrays are) and says so
    lines: list[str] = []
    run_ingest(
        _cfg(vqa_folder, tiny_checkpoint, name, tmp_path / "other", limit=1),
        neo4j_settings,
        progress=False,
        log=lines.append,
    )
    assert _runs(driver, name)[0]["r"]["store"] == str(root.resolve())
    assert any(line.startswith(f"warning: run {name} keeps its file store at {root.resolve()}") for line in lines)


def test_an_unusable_store_is_one_line_and_writes_nothing(driver, names, vqa_folder, tiny_checkpoint, tmp_path):
    name = f"nostore-{uuid.uuid4().hex[:8]}"
    names.append(name)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {**os.environ}
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
        ]
        + ["--run-name", name, "--store", str(blocker / "store"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: cannot create the file store folder") and "Traceback" not in res.stderr
    assert _runs(driver, name) == []
