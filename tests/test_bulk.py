"""Bulk load (docs/bulk.md): `stcg ingest --sink csv:DIR` + `stcg load DIR` against the Bolt writer.

The same 8 VQA-v2 fixture questions, explained by a tiny BLIP-2 (T5) checkpoint, go twice through each
path: plain and with --attributions rollout,occlusion. The Bolt runs go into the shared server; the CSV
runs (plus one killed with SIGKILL and resumed, and one written by two concurrent --shard workers) into
one folder, bulk-loaded into a server of this module's own (a fresh home on free ports, stopped at the
end). Both servers must then hold the same nodes, relationships and properties, and answer every
public template the same.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.graph import Node, Relationship
from neo4j.graph import Path as GraphPath
from neo4j.time import DateTime

from ingest.bulk import CsvFolder, load_csv, prepare_import
from ingest.sinks.csv_files import CsvSink
from queries.library import load_template, template_names
from stcg.errors import StcgError
from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder

KW = dict(deletion_steps=2, top_k=3, perturbations="gaussian_noise,center_mask,patch_shuffle", batch_size=2)
METHODS = "rollout,occlusion"
N = 8
# bookkeeping of a write (when, which file-store shard, where the store is) differs between any two runs
IGNORED = {"completed_at", "store_shard", "started_at", "updated_at", "finished_at"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ingest_cmd(folder, ckpt, run, store, sink, *extra):
    return [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model", ckpt,
            "--device", "cpu", "--run-name", run, "--store", str(store), "--quiet", "--batch-size", "2",
            "--deletion-steps", "2", "--perturbations", KW["perturbations"], "--top-k", "3", "--sink", sink,
            *extra]  # fmt: skip


def _complete(csv_dir: Path, run: str) -> int:
    return sum(
        1 for _, m in CsvFolder(csv_dir).manifests() for r, _, s in m["examples"] if r == run and s == "complete"
    )


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_checkpoint, driver):
    """{'bolt': driver, 'bulk': driver of the loaded server, 'runs': {label: (bolt id, bulk id)}, ...}."""
    from stcg.neo4j_runtime import LocalNeo4j

    tmp = tmp_path_factory.mktemp("bulk")
    folder = make_vqa_v2_folder(tmp / "vqa", n_images=4, questions_per_image=2)
    tag = uuid.uuid4().hex[:8]
    bolt = {"plain": f"test-bulk-plain-{tag}", "methods": f"test-bulk-methods-{tag}"}
    csv_dir = tmp / "csv"
    server = LocalNeo4j(
        home=tmp / "neo4j", bolt_port=_free_port(), http_port=_free_port(), heap="512m", pagecache="64m"
    )
    logs: list[str] = []
    try:
        for label, extra in (("plain", {}), ("methods", {"attributions": METHODS})):
            ingest_fixture_run(folder, tiny_checkpoint, bolt[label], tmp / "store-bolt", **KW, **extra)
            ingest_fixture_run(
                folder, tiny_checkpoint, f"bulk-{label}", tmp / "store-csv", sink=f"csv:{csv_dir}", **KW, **extra
            )
        parts = len(CsvFolder(csv_dir).manifests())
        again = ingest_fixture_run(
            folder, tiny_checkpoint, "bulk-plain", tmp / "store-csv", sink=f"csv:{csv_dir}", **KW
        )  # the same command again: everything is complete, nothing is written
        assert (again.skipped, again.written, again.nodes) == (N, 0, 0)
        assert len(CsvFolder(csv_dir).manifests()) == parts

        # killed with SIGKILL once some, not all, examples are in the folder; the same command resumes
        cmd = _ingest_cmd(folder, tiny_checkpoint, "bulk-resumed", tmp / "store-csv", f"csv:{csv_dir}")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while time.time() < deadline and _complete(csv_dir, "bulk-resumed") < 2 and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGSTOP)  # frozen at once, killed next: nothing more is written in between
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = _complete(csv_dir, "bulk-resumed")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]

        # two --shard workers at once into the same folder, and the same two over Bolt: a shard pads other
        # questions into its batches than the whole run, so its numbers equal a sharded run's, not the
        # plain one's (float32 rounds per batch shape)
        def shards(run, store, sink):
            workers = [
                subprocess.Popen(
                    _ingest_cmd(folder, tiny_checkpoint, run, store, sink, "--shard", s),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for s in ("0/2", "1/2")
            ]
            outs = [w.communicate(timeout=600) for w in workers]
            assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for _, e in outs]
            return outs

        outs = shards("bulk-sharded", tmp / "store-csv", f"csv:{csv_dir}")
        bolt["sharded"] = f"test-bulk-sharded-{tag}"
        shards(bolt["sharded"], tmp / "store-bolt", "neo4j")

        loaded = load_csv(csv_dir, server, log=logs.append)
        with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as bulk:
            yield {
                "bolt": driver,
                "bulk": bulk,
                "server": server,
                "csv": csv_dir,
                "loaded": loaded,
                "logs": logs,
                "killed_at": killed_at,
                "resumed_out": done.stdout + done.stderr,
                "shard_outs": [o for o, _ in outs],
                "stores": {"bolt": str(tmp / "store-bolt"), "bulk": str(tmp / "store-csv")},
                "runs": {
                    "plain": (bolt["plain"], "bulk-plain"),
                    "methods": (bolt["methods"], "bulk-methods"),
                    "resumed": (bolt["plain"], "bulk-resumed"),
                    "sharded": (bolt["sharded"], "bulk-sharded"),
                },
            }
    finally:
        server.stop(log=lambda s: None)
        with driver.session() as s:
            for rid in bolt.values():
                s.run(
                    "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid
                ).consume()


def _norm(x, subs: dict[str, str]):
    """A query result with run ids and store roots replaced, write bookkeeping left out, graph objects as dicts."""
    if isinstance(x, str):
        for old, new in subs.items():
            x = x.replace(old, new)
        return x
    if isinstance(x, DateTime):
        return "<datetime>"
    if isinstance(x, Node):
        return {"_labels": sorted(x.labels), **_norm(dict(x), subs)}
    if isinstance(x, Relationship):
        ends = {"_start": x.start_node.get("uid"), "_end": x.end_node.get("uid")}  # None: not returned
        return {"_type": x.type, **_norm({**dict(x), **ends}, subs)}
    if isinstance(x, GraphPath):
        return [_norm(list(x.nodes), subs), _norm(list(x.relationships), subs)]
    if isinstance(x, dict):
        return {k: _norm(v, subs) for k, v in x.items() if k not in IGNORED}
    if isinstance(x, (list, tuple)):
        return [_norm(v, subs) for v in x]
    return x


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True)
    return a == b


def _answers(drv, name: str, params: dict, subs: dict, keep=None) -> list:
    """Every record of template ``name`` (normalised), sorted (ties may come back in any order)."""
    t = load_template(name)
    records, _, _ = drv.execute_query(t.cypher, t.bind(**params))
    rows = [_norm(r.data(), subs) for r in records]
    if keep is not None:
        rows = [r for r in rows if keep(r)]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _subs(both, side: int, *labels: str) -> dict:
    subs = {both["runs"][label][side]: label.upper() for label in labels}
    subs[both["stores"]["bolt" if side == 0 else "bulk"]] = "STORE"
    return dict(sorted(subs.items(), key=lambda kv: -len(kv[0])))  # longer ids first


@pytest.mark.parametrize("label", ["plain", "methods", "resumed", "sharded"])
def test_every_template_answers_the_same_after_a_bulk_load(both, label):
    """Every public template with a run parameter, on the Bolt-written and the bulk-loaded run."""
    bolt_id, bulk_id = both["runs"][label]
    example = sorted(r["e"] for r in both["bulk"].execute_query(
        "MATCH (e:Example {run_id: $r}) RETURN e.example_id AS e", r=bulk_id
    )[0])[0]  # fmt: skip
    checked, nonempty = 0, 0
    for name in template_names():
        t = load_template(name)
        if not t.param("run_id"):
            continue
        params = {"example_id": example} if t.param("example_id") else {}
        views = ("structural", "temporal", "counterfactual", "all") if name == "example_graph" else (None,)
        for method in ("attention", "rollout", "occlusion") if t.param("method") else (None,):
            for view in views:
                kw = {**params, **({"view": view} if view else {}), **({"method": method} if method else {})}
                a = _answers(both["bolt"], name, {"run_id": bolt_id, **kw}, {bolt_id: "RUN", **_subs(both, 0)})
                b = _answers(both["bulk"], name, {"run_id": bulk_id, **kw}, {bulk_id: "RUN", **_subs(both, 1)})
                assert _close(a, b), (name, kw, a[:3], b[:3])
                checked, nonempty = checked + 1, nonempty + (len(a) > 0)
    assert checked >= 30 and nonempty >= checked // 2, (checked, nonempty)


def test_runs_and_compare_runs_answer_the_same(both):
    """The two templates that read several runs: the runs list (our runs' rows) and compare_runs."""
    for side, drv in ((0, both["bolt"]), (1, both["bulk"])):
        both[f"runs{side}"] = _answers(
            drv, "runs", {"limit": 10_000}, _subs(both, side, "plain", "methods"), keep=lambda r: r["run_id"].isupper()
        )
        a_id, b_id = both["runs"]["plain"][side], both["runs"]["methods"][side]
        both[f"cmp{side}"] = _answers(drv, "compare_runs", {"run_a": a_id, "run_b": b_id}, {})
    assert [r["run_id"] for r in both["runs0"]] == ["METHODS", "PLAIN"]
    assert _close(both["runs0"], both["runs1"]) and all(r["status"] == "complete" for r in both["runs1"])
    assert len(both["cmp0"]) == 3 and _close(both["cmp0"], both["cmp1"])


def _graph(drv, run: str, subs: dict) -> tuple[list, list]:
    """Every node of a run and every relationship leaving one, with all properties, normalised and sorted."""
    nodes, _, _ = drv.execute_query("MATCH (n {run_id: $r}) RETURN n", r=run)
    rels, _, _ = drv.execute_query("MATCH (n {run_id: $r})-[x]->(m) RETURN x, n.uid AS a, m.uid AS b", r=run)
    key = lambda v: json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    nodes = [_norm(r["n"], subs) for r in nodes]
    rels = [{**_norm(r["x"], subs), "_start": _norm(r["a"], subs), "_end": _norm(r["b"], subs)} for r in rels]
    return sorted(nodes, key=key), sorted(rels, key=key)


@pytest.mark.parametrize("label", ["plain", "methods", "resumed", "sharded"])
def test_the_same_nodes_relationships_and_properties(both, label):
    """Uids, labels, relationship types and every property (typed: lists, booleans, datetimes) equal the
    Bolt writer's, Run bookkeeping included; only write times, store paths and ids differ."""
    bolt_id, bulk_id = both["runs"][label]
    a_nodes, a_rels = _graph(both["bolt"], bolt_id, {bolt_id: "RUN", **_subs(both, 0)})
    b_nodes, b_rels = _graph(both["bulk"], bulk_id, {bulk_id: "RUN", **_subs(both, 1)})
    if label == "sharded":  # each worker records its own share's size (the last one wins, as over Bolt) and
        for n in a_nodes + b_nodes:  # writes its own file-store shards (an example's key in its shard differs)
            n.pop("n_selected", None)
            n.pop("store_key", None)
    assert len(a_nodes) == len(b_nodes) and len(a_rels) == len(b_rels)
    assert [n["uid"] for n in a_nodes] == [n["uid"] for n in b_nodes]
    differ = [(a, b) for a, b in zip(a_nodes + a_rels, b_nodes + b_rels) if not _close(a, b)]
    assert not differ, [
        {k: (a.get(k), b.get(k)) for k in {*a, *b} if not _close(a.get(k), b.get(k))} for a, b in differ
    ]
    run = next(n for n in b_nodes if n["_labels"] == ["Run"])
    assert run["status"] == "complete" and run["n_complete"] == N and run["n_failed"] == 0
    examples = [n for n in b_nodes if n["_labels"] == ["Example"]]
    assert len(examples) == N and all(e["complete"] is True for e in examples)
    # typed, not strings: datetimes, float lists, string lists
    with both["bulk"].session() as s:
        rec = s.run(
            "MATCH (r:Run {uid: $r})-[:HAS_EXAMPLE]->(e:Example) RETURN r.started_at AS t, e.completed_at AS c, "
            "e.attribution AS a, e.answers AS answers LIMIT 1",
            r=bulk_id,
        ).single()
    assert isinstance(rec["t"], DateTime) and isinstance(rec["c"], DateTime)
    assert all(isinstance(v, float) for v in rec["a"]) and all(isinstance(v, str) for v in rec["answers"])
    if label == "methods":
        kinds = {tuple(n["_labels"]) for n in b_nodes}
        types = {r["_type"] for r in b_rels}
        assert ("Explanation",) in kinds and {"ATTRIBUTES", "RANKS", "UNDER", "HAS_EXPLANATION"} <= types


def test_load_checked_every_count_and_said_so(both):
    loaded = both["loaded"]
    with both["bulk"].session() as s:
        nodes = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
        rels = s.run("MATCH ()-[r]->() RETURN count(r) AS c").single()["c"]
        names = {r["name"] for r in s.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    stats = loaded["stats_nodes"]  # written after the import, one HAS_STATS link each
    assert stats > 0 and (nodes, rels) == (loaded["nodes"] + stats, loaded["relationships"] + stats)
    assert loaded["counts"]["nodes"]["Run"] == 4 and loaded["counts"]["nodes"]["Example"] == 4 * N
    assert {"stcg_example_uid", "stcg_run_uid", "stcg_run_name_key"} <= names
    assert any(line.startswith("loaded ") and "counts checked" in line for line in both["logs"])


def test_a_killed_csv_ingest_resumes_without_duplicates(both):
    """SIGKILL after 2..7 of 8 examples; the rerun writes only the rest (the graph equals the Bolt run's,
    asserted above); every example is in the folder exactly once."""
    assert 2 <= both["killed_at"] < N, both["killed_at"]
    assert f"({both['killed_at']} already complete)" in both["resumed_out"]
    seen = [ex for _, m in CsvFolder(both["csv"]).manifests() for r, ex, _ in m["examples"] if r == "bulk-resumed"]
    assert len(seen) == len(set(seen)) == N


def test_two_shard_workers_give_the_whole_run(both):
    said = [o for o in both["shard_outs"] if "every shard's examples are done; the run is complete (8 complete)" in o]
    assert len(said) == 1, both["shard_outs"]  # exactly one worker finalised the run, as over Bolt


def test_a_database_that_is_not_empty_is_refused_in_one_line(both):
    server = both["server"]
    pid = server.status().pid
    before = both["loaded"]["nodes"] + both["loaded"]["stats_nodes"]
    res = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "load", str(both["csv"]), "--home", str(server.home)]
        + ["--bolt-port", str(server.bolt_port), "--http-port", str(server.http_port)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0] == (
        f"error: database neo4j is not empty ({before} nodes); neo4j-admin import needs an empty database in "
        "Community edition — write into it with `stcg ingest` (Bolt) instead"
    )
    assert server.status().pid == pid  # never stopped
    with both["bulk"].session() as s:
        assert s.run("MATCH (n) RETURN count(n) AS c").single()["c"] == before


def test_a_failure_written_again_is_left_out_and_two_complete_copies_are_refused(tmp_path):
    """Bolt MERGEs a retried example onto its failure row; the files keep both, so the load leaves the
    failure out. One example complete twice (two commands at once) cannot be imported: one line."""
    import numpy as np

    from ingest.rows import failure_rows, graph_rows
    from stcg_model.testing.synthetic import synthetic_graph

    sink = CsvSink(tmp_path / "csv")
    sink.prepare()
    sink.claim_run("r1", "id", str(tmp_path / "store"), {"name": "r1", "n_total": 2})
    failures = failure_rows("r1", "ex0", "model: boom\nsecond line")  # a multi-line reason
    failures.extend(failure_rows("r1", "ex1", "unreadable image"))
    sink.write(failures)
    assert sink.completed("r1") == set()
    sink.write(graph_rows(synthetic_graph("ex0", np.random.default_rng(0)), "r1", top_k=3))
    assert sink.completed("r1") == {"ex0"}
    assert sink.finish("r1", finished=True) == {
        "complete": 1, "failed": 1, "status": "complete", "total": 2, "finalised": False
    }  # fmt: skip
    plan = prepare_import(tmp_path / "csv")
    assert (
        plan["dropped"] == 2
        and plan["nodes"]["Run"] == 1
        and plan["nodes"]["Example"] == 2
        and plan["relationships"]["HAS_EXAMPLE"] == 2
    )
    args = Path(plan["args"]).read_text()
    assert "--multiline-fields=" not in args  # the multi-line failure was left out with its example's retry
    assert args.count(".load/") == 2  # the filtered copies of the first failure's two files
    CsvSink(tmp_path / "csv").write(graph_rows(synthetic_graph("ex0", np.random.default_rng(0)), "r1", top_k=3))
    with pytest.raises(StcgError, match="example 'ex0' of run 'r1' is written complete twice") as e:
        prepare_import(tmp_path / "csv")
    assert "\n" not in str(e.value)
