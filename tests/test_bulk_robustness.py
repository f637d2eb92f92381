"""Robustness of the bulk path (issue 22): `stcg load` against a server of this module's own (a fresh
home on free ports, stopped at the end) and `stcg ingest --sink csv:DIR` in real subprocesses.

- a failed import puts the database back as it was (empty, online), and the next load works;
- two loads of one home at once: the second is refused in one line, nothing touched;
- a load killed with SIGKILL during its import is undone, one killed after it is finished;
- an unavailable database is one line, not a traceback;
- a CSV folder holds nothing but what CsvSink writes (no links, nothing from outside, owner-only);
- a record larger than neo4j-admin's 4 MiB read buffer loads;
- writer leases on the CSV folder: two commands writing the same examples of a run, one is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from neo4j import GraphDatabase

from ingest.bulk import CsvFolder, load_csv, prepare_import, read_load_record
from ingest.lease import Lease
from ingest.rows import failure_rows, graph_rows
from ingest.sinks.csv_files import CsvSink
from stcg.errors import StcgError
from stcg_model.testing.synthetic import synthetic_graph
from tests.vqa_fixtures import make_vqa_v2_folder

ASIDE = ".stcg-before-load"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _folder(path: Path, run: str = "r1", examples: int = 2, question: str | None = None) -> Path:
    """A CSV folder written by CsvSink: ``examples`` synthetic examples and one failed example (its
    question ``question``), the run finished."""
    sink = CsvSink(path)
    sink.prepare()
    sink.claim_run(run, "id", str(path.parent / "store"), {"name": run, "n_total": examples + 1})
    for i in range(examples):
        sink.write(graph_rows(synthetic_graph(f"ex{i}", np.random.default_rng(i)), run, top_k=3))
    sink.write(failure_rows(run, "bad", "unreadable image", {"question": question or "what?\nwhy?"}))
    sink.finish(run, finished=True)
    return path


def _stcg(*args: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _error(res: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (no traceback, nothing else on stderr)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------- the folder


def test_the_csv_folder_is_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        root = _folder(tmp_path / "csv")
        prepare_import(root)
    finally:
        os.umask(old)
    seen = 0
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
        seen += 1
    assert seen > 20 and (root / ".load").exists() is False  # nothing filtered in this folder


def _part(root: Path, n: int = 0) -> Path:
    return sorted(p for p in (root / "parts").iterdir() if not p.name.startswith("."))[n]


def _manifest(part: Path) -> dict:
    return json.loads((part / "manifest.json").read_text())


def _set_manifest(part: Path, m: dict) -> None:
    (part / "manifest.json").write_text(json.dumps(m))


def _outside(root: Path):
    """The issue's attack: a manifest entry ``../../../secret_outside.txt`` with a made-up header."""
    secret = root.parent / "secret_outside.txt"
    secret.write_text('"x","y"\n')
    (root / "headers" / "Example.0123456789.csv").write_text("uid:ID(Example),secret:string\n")
    part = _part(root)
    m = _manifest(part)
    m["files"]["../../../secret_outside.txt"] = {
        "group": "Example", "node": True, "header": "Example.0123456789.csv", "rows": 1, "failed": False,
        "multiline": False,
    }  # fmt: skip
    _set_manifest(part, m)
    return part / "manifest.json", "secret_outside.txt"


def _symlinked_data_file(root: Path):
    part = _part(root)
    data = next(p for p in part.iterdir() if p.name.startswith("Token."))
    copy = root.parent / "elsewhere.csv"
    shutil.copy(data, copy)
    data.unlink()
    data.symlink_to(copy)
    return data, "symbolic link"


def _symlinked_part(root: Path):
    part = _part(root)
    away = root.parent / "away"
    shutil.copytree(part, away)
    shutil.rmtree(part)
    part.symlink_to(away)
    return part, "symbolic link"


def _unknown_group(root: Path):
    part = _part(root)
    m = _manifest(part)
    name = next(n for n in m["files"] if n.startswith("Token."))
    info = m["files"].pop(name)
    new = name.replace("Token.", "Secret.")
    (part / name).rename(part / new)
    m["files"][new] = {**info, "group": "Secret", "header": info["header"].replace("Token.", "Secret.")}
    _set_manifest(part, m)
    return part / "manifest.json", "Secret"


def _edited_header(root: Path):
    header = next((root / "headers").glob("Region.*.csv"))
    header.write_text(header.read_text()[:-1] + ",extra:string\n")
    return header, "not the header CsvSink writes"


def _header_of_another_signature(root: Path):
    headers = sorted((root / "headers").glob("Example.*.csv"))
    assert len(headers) >= 2  # a complete and a failed example have different columns
    headers[0].write_text(headers[-1].read_text())
    return headers[0], "not the header CsvSink writes"


def _bad_status(root: Path):
    part = _part(root)
    m = _manifest(part)
    m["examples"][0][2] = "done"
    _set_manifest(part, m)
    return part / "manifest.json", "[run, example, status]"


def _rows_as_text(root: Path):
    part = _part(root)
    m = _manifest(part)
    info = next(iter(m["files"].values()))
    info["rows"] = str(info["rows"])
    _set_manifest(part, m)
    return part / "manifest.json", "CsvSink does not write"


def _stray_file(root: Path):
    extra = _part(root) / "notes.txt"
    extra.write_text("hello")
    return extra, "not listed"


def _run_uid(root: Path):
    run_json = next((root / "runs").glob("*/run.json"))
    props = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**props, "uid": "another"}))
    return run_json, "hashes to"


def _edited_run_csv(root: Path):
    run_csv = next((root / "runs").glob("*/Run.csv"))
    run_csv.write_text(run_csv.read_text().replace('"r1"', '"r2"', 1))
    return run_csv, "is not what `stcg ingest` writes"


def _world_writable_folder(root: Path):
    (root / "parts").chmod(0o777)
    return root / "parts", "group- or world-writable"


def _group_writable_file(root: Path):
    data = next(_part(root, 1).glob("*.csv"))
    data.chmod(0o660)
    return data, "group- or world-writable"


TAMPERS = [
    _outside,
    _symlinked_data_file,
    _symlinked_part,
    _unknown_group,
    _edited_header,
    _header_of_another_signature,
    _bad_status,
    _rows_as_text,
    _stray_file,
    _run_uid,
    _edited_run_csv,
    _world_writable_folder,
    _group_writable_file,
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__.strip("_") for t in TAMPERS])
def test_anything_csvsink_would_not_write_is_refused_in_one_line(tmp_path, tamper):
    """Names, groups, headers, manifests and runs are checked; the line names the offending file."""
    root = _folder(tmp_path / "csv")
    prepare_import(root)  # as written: fine
    (root / "import.args").unlink()
    offending, why = tamper(root)
    with pytest.raises(StcgError) as e:
        prepare_import(root)
    msg = str(e.value)
    assert "\n" not in msg and str(offending) in msg and why in msg, msg
    assert not (root / "import.args").exists()  # refused before anything is written


def test_the_issue_s_outside_file_is_refused_by_stcg_load(tmp_path):
    """`stcg load --prepare-only` (and so `stcg load`) on the folder of the issue: one line, exit 2."""
    root = _folder(tmp_path / "csv")
    _outside(root)
    res = _stcg("load", str(root), "--prepare-only")
    line = _error(res)
    assert res.returncode == 2 and "secret_outside.txt" in line and "manifest.json" in line, line


def test_links_to_the_lock_file_and_the_folder_are_refused(tmp_path):
    root = _folder(tmp_path / "csv")
    target = tmp_path / "target"
    target.write_text("")
    (root / ".lock").unlink()
    (root / ".lock").symlink_to(target)
    sink = CsvSink(root)
    with pytest.raises(StcgError, match=r"\.lock is a symbolic link") as e:
        sink.prepare()
    with pytest.raises(StcgError, match=r"\.lock is a symbolic link"):
        sink.set_params("r1", "{}")  # O_NOFOLLOW: never opened through the link
    assert "\n" not in str(e.value) and target.read_text() == ""
    (root / ".lock").unlink()
    shutil.move(root / "headers", tmp_path / "headers")
    (root / "headers").symlink_to(tmp_path / "headers")
    with pytest.raises(StcgError, match=r"headers is a symbolic link"):
        CsvSink(root).prepare()


def test_read_buffer_fits_the_largest_record(tmp_path):
    """The manifests record the longest record; import.args asks neo4j-admin for twice that (4 MiB at least);
    a manifest written before this change (no such entry) gets the default."""
    small = prepare_import(_folder(tmp_path / "small"))
    assert small["read_buffer"] == 4 << 20 and "--read-buffer-size=4m\n" in Path(small["args"]).read_text()
    root = _folder(tmp_path / "big", question="é" * (3 << 20))  # 6 MiB of UTF-8 in one record
    sizes = [m["max_record_bytes"] for _, m in CsvFolder(root).manifests()]
    assert max(sizes) > 6 << 20 and min(sizes) < 1 << 20
    big = prepare_import(root)
    assert big["read_buffer"] == 13 << 20 and "--read-buffer-size=13m\n" in Path(big["args"]).read_text()
    for part, m in CsvFolder(tmp_path / "small").manifests():
        del m["max_record_bytes"]
        _set_manifest(part, m)
    assert prepare_import(tmp_path / "small")["read_buffer"] == 4 << 20


# ------------------------------------------------------------------------------------- leases


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_csv_writer_leases(tmp_path):
    """claim / heartbeat / release / finish with leases, as the Bolt sink does with Writer nodes."""
    root = tmp_path / "csv"
    a, b = CsvSink(root), CsvSink(root)
    a.prepare()
    props = {"name": "r1", "n_total": 2}
    la, lb = Lease.new(), Lease.new()
    a.claim_run("r1", "id", "store", props, lease=la)
    run_dir = CsvFolder(root).run_dir("r1")
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(StcgError, match="is being written by another command") as e:
        b.claim_run("r1", "id", "store", props, lease=lb)  # the same examples: refused, nothing changed
    assert e.value.exit_code == 2 and "\n" not in str(e.value) and f"pid {os.getpid()}" in str(e.value)
    assert (run_dir / "run.json").read_bytes() == before
    leases = json.loads((run_dir / "writers.json").read_text())
    assert list(leases) == [la.uid] and stat.S_IMODE((run_dir / "writers.json").stat().st_mode) == 0o600
    assert "writers" not in (run_dir / "Run.csv").read_text() and la.uid not in (run_dir / "Run.csv").read_text()

    # a dead command's lease (its process is gone) does not hold the run
    dead = Lease("dead" * 8, la.host, _dead_pid())
    a.release("r1", la.uid)
    leases = {dead.uid: {**dead.as_dict(), "heartbeat": time.time()}}
    CsvFolder(root).write_leases("r1", leases)
    b.claim_run("r1", "id", "store", props, lease=lb)
    assert list(json.loads((run_dir / "writers.json").read_text())) == [lb.uid]

    # heartbeat refreshes; one taken away (judged dead meanwhile) is taken again and the run is running
    t0 = json.loads((run_dir / "writers.json").read_text())[lb.uid]["heartbeat"]
    time.sleep(0.01)
    b.heartbeat("r1", lb.uid)
    assert json.loads((run_dir / "writers.json").read_text())[lb.uid]["heartbeat"] > t0
    CsvFolder(root).write_leases("r1", {})
    b.heartbeat("r1", lb.uid)
    assert list(json.loads((run_dir / "writers.json").read_text())) == [lb.uid]
    with pytest.raises(StcgError, match="no lease"):
        b.heartbeat("r1", la.uid)

    # shards of one split do not overlap; while one still writes, the other's finish does not finalise
    b.release("r1", lb.uid)
    s0, s1 = Lease.new("0/2"), Lease.new("1/2")
    a.claim_run("r1", "id", "store", props, lease=s0)
    b.claim_run("r1", "id", "store", props, lease=s1)
    with pytest.raises(StcgError, match="shard 0/2"):
        CsvSink(root).claim_run("r1", "id", "store", props, lease=Lease.new("0/2"))
    with pytest.raises(StcgError, match="is being written by another command"):
        CsvSink(root).claim_run("r1", "id", "store", props, lease=Lease.new("2/3"))
    a.write(graph_rows(synthetic_graph("ex0", np.random.default_rng(0)), "r1", top_k=3))
    b.write(graph_rows(synthetic_graph("ex1", np.random.default_rng(1)), "r1", top_k=3))
    end = a.finish("r1", False, lease_uid=s0.uid)
    assert (end["status"], end["finalised"], end["complete"]) == ("running", False, 2)
    assert CsvFolder(root).read_run("r1")["status"] == "running"
    end = b.finish("r1", False, lease_uid=s1.uid)
    assert (end["status"], end["finalised"]) == ("complete", True)
    assert json.loads((run_dir / "writers.json").read_text()) == {}
    # the old signatures (no lease) still work
    a.claim_run("r1", "id", "store", props)
    assert a.finish("r1", True)["status"] == "complete"


# --------------------------------------------------------------------------- concurrent CSV ingests


def _ingest_cmd(folder, ckpt, run, store, sink, *extra):
    return [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", ckpt,
            "--device", "cpu", "--run-name", run, "--store", str(store), "--quiet", "--batch-size", "2",
            "--deletion-steps", "2", "--perturbations", "gaussian_noise", "--top-k", "3", "--sink", sink,
            *extra]  # fmt: skip


def test_two_csv_ingests_of_one_run_at_once(tmp_path, tiny_checkpoint):
    """Two `stcg ingest --sink csv:DIR` of the same run: one is refused in one line (exit 2), the other
    explains every example once; two --shard workers of one split both succeed."""
    data = make_vqa_v2_folder(tmp_path / "vqa", n_images=4, questions_per_image=2)
    csv_dir = tmp_path / "csv"

    def both(run, extras):
        procs = [
            subprocess.Popen(
                _ingest_cmd(data, tiny_checkpoint, run, tmp_path / "store", f"csv:{csv_dir}", *extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for extra in extras
        ]
        return [(p, *p.communicate(timeout=600)) for p in procs]

    outs = both("same", [(), ()])
    codes = sorted(p.returncode for p, _, _ in outs)
    assert codes == [0, 2], [e[-2000:] for _, _, e in outs]
    refused = next(e for p, _, e in outs if p.returncode == 2)
    line = refused.strip().splitlines()
    assert len(line) == 1 and "is being written by another command" in line[0], refused[-2000:]
    seen = [ex for _, m in CsvFolder(csv_dir).manifests() for r, ex, _ in m["examples"] if r == "same"]
    assert len(seen) == len(set(seen)) == 8
    assert CsvFolder(csv_dir).read_run("same")["status"] == "complete"

    outs = both("sharded", [("--shard", "0/2"), ("--shard", "1/2")])
    assert [p.returncode for p, _, _ in outs] == [0, 0], [e[-2000:] for _, _, e in outs]
    run = CsvFolder(csv_dir).read_run("sharded")
    assert run["status"] == "complete" and run["n_complete"] == 8
    assert json.loads((CsvFolder(csv_dir).run_dir("sharded") / "writers.json").read_text()) == {}
    prepare_import(csv_dir)  # and the folder loads: no example twice


# ------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from stcg.neo4j_runtime import LocalNeo4j

    tmp = tmp_path_factory.mktemp("robust")
    srv = LocalNeo4j(home=tmp / "neo4j", bolt_port=_free_port(), http_port=_free_port(), heap="512m", pagecache="64m")
    srv.tmp = tmp
    srv.good = _folder(tmp / "good")
    try:
        yield srv
    finally:
        srv.stop(log=lambda s: None)


def _home(server) -> list[str]:
    return ["--home", str(server.home), "--bolt-port", str(server.bolt_port), "--http-port", str(server.http_port)]


def _state(server) -> tuple[str, int]:
    """(status of database neo4j as the system database records it, its node count)."""
    with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as d:
        status = d.execute_query(
            "SHOW DATABASES YIELD name, currentStatus WHERE name = 'neo4j' RETURN currentStatus", database_="system"
        ).records[0][0]
        n = (
            d.execute_query("MATCH (n) RETURN count(n) AS c", database_="neo4j").records[0][0]
            if status == "online"
            else -1
        )
    return status, n


def _empty(server) -> None:
    with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as d:
        with d.session(database="neo4j") as s:
            s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()


def _nothing_left(server) -> None:
    data = server.home / "data"
    assert read_load_record(server.home) is None
    assert not [p for p in data.glob(f"*/*{ASIDE}")], list(data.glob(f"*/*{ASIDE}"))


def _loaded(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stderr[-3000:]
    assert "counts checked" in res.stdout, res.stdout[-2000:]


def test_a_failed_import_puts_the_database_back(server):
    """A data file damaged after `stcg ingest` wrote it: neo4j-admin fails, the database is back as it was
    (Neo4j's system database starts it: online, empty) and the next load of a good folder works."""
    bad = _folder(server.tmp / "bad")
    token = next(p for p in _part(bad).iterdir() if p.name.startswith("Token."))
    token.write_text(token.read_text() + '"unterminated,\n')
    res = _stcg("load", str(bad), *_home(server))
    line = _error(res)
    assert "neo4j-admin import failed (exit" in line, line
    assert "the database was put back as it was before this load (0 nodes, online)" in line, line
    assert _state(server) == ("online", 0)
    _nothing_left(server)
    _loaded(_stcg("load", str(server.good), *_home(server)))
    assert _state(server)[1] > 0
    _empty(server)


def test_two_loads_of_one_home_at_once(server):
    """The second is refused at once in one line naming the home and the first one's pid."""
    lock = server.home / "run" / "stcg-load.lock"
    first = subprocess.Popen(
        [sys.executable, "-m", "stcg_cli.main", "load", str(server.good), *_home(server)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(first.pid):
            break
        time.sleep(0.01)
    second = _stcg("load", str(server.good), *_home(server), timeout=60)
    line = _error(second)
    assert second.returncode == 2
    assert line == (
        f"error: another `stcg load` (pid {first.pid}) is loading into the Neo4j home {server.home}; wait for it "
        "to end (this one changed nothing)"
    )
    out, err = first.communicate(timeout=400)
    assert first.returncode == 0 and "counts checked" in out, err[-3000:]
    _nothing_left(server)
    _empty(server)


def _kill_at(server, step: str) -> dict:
    """Start `stcg load` of the good folder and SIGKILL it as soon as its record says ``step``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stcg_cli.main", "load", str(server.good), *_home(server)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, rec = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        try:
            rec = read_load_record(server.home)
        except StcgError:  # caught between the temporary file and the rename
            rec = None
        if rec and rec.get("step") == step and (step != "importing" or rec.get("admin_pid")):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert rec and rec["step"] == step, rec
    return rec


def _gone(pid: int, within: float = 20) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def test_a_load_killed_during_its_import_is_undone(server):
    rec = _kill_at(server, "importing")
    assert _gone(rec["admin_pid"])  # neo4j-admin dies with its `stcg load`
    assert sorted(p.name for p in (server.home / "data" / "databases").glob(f"*{ASIDE}")) == [f"neo4j{ASIDE}"]
    again = _error(_stcg("load", str(server.good), *_home(server)))
    assert f"a `stcg load` of {server.good} into the Neo4j home {server.home}" in again
    assert "was interrupted during its neo4j-admin import" in again and "--undo" in again, again
    assert "--finish" not in again, again
    finish = _error(_stcg("load", "--finish", *_home(server)))
    assert "it cannot be finished" in finish and "--undo" in finish, finish
    undo = _stcg("load", "--undo", *_home(server))
    assert undo.returncode == 0, undo.stderr[-3000:]
    assert "is as it was before it (0 nodes), online" in undo.stdout, undo.stdout
    assert _state(server) == ("online", 0)
    _nothing_left(server)
    assert _error(_stcg("load", "--undo", *_home(server))).endswith("nothing to undo")
    _loaded(_stcg("load", str(server.good), *_home(server)))
    _empty(server)


def test_a_load_killed_after_its_import_is_finished(server):
    rec = _kill_at(server, "imported")
    again = _error(_stcg("load", str(server.good), *_home(server)))
    assert "was interrupted after its import" in again and "--finish" in again and "--undo" in again, again
    done = _stcg("load", "--finish", *_home(server))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "counts checked" in done.stdout and "statistics of 1 complete run(s)" in done.stdout, done.stdout
    _nothing_left(server)
    plan = rec["plan"]
    with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as d:
        examples = d.execute_query("MATCH (e:Example) RETURN count(e)", database_="neo4j").records[0][0]
        stats = d.execute_query("MATCH (:Run)-[:HAS_STATS]->(x:Stats) RETURN count(x)", database_="neo4j").records[0][0]
        names = {r[0] for r in d.execute_query("SHOW CONSTRAINTS YIELD name RETURN name", database_="neo4j").records}
    assert examples == plan["nodes"]["Example"] == 3 and stats > 0 and "stcg_example_uid" in names
    _empty(server)


def test_a_record_larger_than_4_mib_loads(server):
    """A failed example's 5 MB question with CR LF in it (the issue's `found CR outside a text cell`)."""
    question = ("why\r\nis it " * 500_000)[:5_000_000]
    root = _folder(server.tmp / "big", question=question)
    logs: list[str] = []
    loaded = load_csv(root, server, log=logs.append)
    assert loaded["counts"]["nodes"]["Example"] == 3 and "--read-buffer-size=10m" in (root / "import.args").read_text()
    with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as d:
        got = d.execute_query("MATCH (e:Example {example_id: 'bad'}) RETURN e.question", database_="neo4j").records
    assert got[0][0] == question
    _nothing_left(server)
    _empty(server)


def test_an_unavailable_database_is_one_line(server):
    """Neo4j starts, its database does not (transaction logs gone): every command says so in one line."""
    logs = server.home / "data" / "transactions" / "neo4j"
    server.stop(log=lambda s: None)
    logs.rename(logs.with_name("neo4j.moved"))
    try:
        server.start(log=lambda s: None)
        assert _state(server)[0] == "offline"
        line = _error(_stcg("load", str(server.good), *_home(server)))
        assert line.startswith(
            f"error: database 'neo4j' on bolt://127.0.0.1:{server.bolt_port} is unavailable (offline, or it "
            f"failed to start): see {server.home / 'logs' / 'debug.log'}"
        ), line
        env = {**os.environ, "NEO4J_PASSWORD": server.password, "STCG_NEO4J_HOME": str(server.home)}
        line = _error(_stcg("init-db", "--uri", server.bolt_uri, env=env))
        assert line.startswith(f"error: database 'neo4j' on {server.bolt_uri} is unavailable"), line
    finally:
        server.stop(log=lambda s: None)
        shutil.rmtree(logs, ignore_errors=True)
        logs.with_name("neo4j.moved").rename(logs)
