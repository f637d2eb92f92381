"""Bulk load: ``stcg ingest --sink csv:DIR`` writes ``neo4j-admin database import`` files, ``stcg load DIR``
imports them into the local server (docs/bulk.md).

The files hold exactly what the Bolt writer would write: the rows come from ``ingest.rows.flat_rows``
(the same uids, labels, relationship types and properties, None left out), the Example completion
markers (``complete``, ``completed_at``) are on the Example rows themselves, and the Run node carries
the properties the Bolt path's Run bookkeeping (``ingest.pipeline``: claim, params, finish) would set.

Layout of DIR::

    headers/<GROUP>.<sig>.csv         one header line per node label / relationship group and column
                                      signature (the columns a row has and their types: a property a row
                                      lacks, or holds as None, is absent, as with Bolt's ``SET n += row``)
    parts/<time>-<id>/                one committed batch: data files ``<GROUP>.<sig>[.failed].csv`` (no
                                      header) and ``manifest.json`` (which examples, which files, how many
                                      rows); written in ``parts/.tmp-<id>/`` and renamed into place, so a
                                      killed ingest leaves only whole batches (and ``.tmp-*`` leftovers,
                                      never read)
    runs/<run hash>/run.json          the Run node's properties, changed under ``.lock`` as the Bolt
    runs/<run hash>/Run.csv           statements change them; Run.csv is that node, header and row
    import.args                       written by ``prepare_import``: the neo4j-admin arguments (paths
                                      relative to DIR), for ``stcg load`` and for a Docker container
    .load/                            filtered copies of failure files whose examples later succeeded

ID spaces are per label (``uid:ID(Example)``, ``:START_ID(Token)``), so a uid is unique per label as the
uniqueness constraints require. Several commands (``--shard i/N`` workers) write to one DIR at once:
parts have unique names, header files are identical whoever writes them, and the Run's bookkeeping is
serialised by an exclusive lock on ``DIR/.lock``.

What neo4j-admin cannot express: an empty list property (written as absent), a list holding an empty
string or the array delimiter U+001F (refused in one line).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest.rows import NODE_LISTS, REL_TYPES, GraphRows, flat_rows
from stcg.errors import StcgError

ARRAY_DELIMITER = "\x1f"  # U+001F (unit separator): never in our text; neo4j-admin --array-delimiter=U+001F
DATETIME_KEYS = frozenset({"started_at", "updated_at", "finished_at", "completed_at"})
NODE_LABELS = ("Run", "Example", *NODE_LISTS.values())
DATABASE = "neo4j"  # Community edition imports into its one user database


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _type(key: str, value) -> str | None:
    """The neo4j-admin header type of a property value (None: not written, as Bolt stores no null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "datetime" if key in DATETIME_KEYS else "string"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, (list, tuple)):
        if not value:
            return None  # neo4j-admin has no empty array (docs/bulk.md)
        kinds = {_type(key, v) for v in value}
        if kinds == {"long", "double"}:
            kinds = {"double"}
        if len(kinds) != 1 or None in kinds or next(iter(kinds)).endswith("[]"):
            raise StcgError(f"property {key!r} holds a list neo4j-admin cannot import: {value[:5]!r}")
        return f"{kinds.pop()}[]"
    raise StcgError(f"property {key!r} has a value of type {type(value).__name__} that CSV import cannot hold")


def _float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(float(v))


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _datetime(v) -> str:
    return (v.isoformat() if isinstance(v, datetime) else str(v)).replace("+00:00", "Z")


def _element(kind: str, key: str, v) -> str:
    if kind == "double":
        return _float(v)
    if kind == "boolean":
        return "true" if v else "false"
    if kind == "long":
        return str(int(v))
    if kind == "datetime":
        return _datetime(v)
    s = str(v)
    if ARRAY_DELIMITER in s or s == "":
        raise StcgError(f"property {key!r} holds a list element neo4j-admin cannot import: {s!r}")
    return s


def _field(kind: str, key: str, v) -> str:
    if kind == "string":
        return _quote(v)
    if kind.endswith("[]"):
        inner = kind[:-2]
        return _quote(ARRAY_DELIMITER.join(_element(inner, key, x) for x in v))
    return _element(kind, key, v)


class _Group:
    """Rows of one file: a node label or relationship group, and one column signature."""

    def __init__(self, group: str, columns: tuple[tuple[str, str], ...], node: bool):
        self.group, self.columns, self.node = group, columns, node
        text = ",".join(f"{k}:{t}" for k, t in columns)
        self.sig = hashlib.sha1(f"{group}|{node}|{text}".encode()).hexdigest()[:10]

    def header(self) -> str:
        if self.node:
            first = f"uid:ID({self.group})"
        else:
            start, _, end, _ = REL_TYPES[self.group]
            first = f":START_ID({start}),:END_ID({end})"
        return ",".join([first, *(f"{k}:{t}" for k, t in self.columns)]) + "\n"

    @property
    def name(self) -> str:
        return f"{self.group}.{self.sig}"


def _signature(row: dict, skip: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    cols = []
    for k in sorted(row):
        if k in skip:
            continue
        t = _type(k, row[k])
        if t is not None:
            cols.append((k, t))
    return tuple(cols)


def _encode(rows: list[dict], node: bool, group: str, failed: bool, into: dict) -> None:
    """Encode ``rows`` into ``into[(group name, failed)] = [_Group, lines, multiline]``."""
    skip = ("uid",) if node else ("a", "b")
    for row in rows:
        cols = _signature(row, skip)
        g = _Group(group, cols, node)
        slot = into.get((g.name, failed))
        if slot is None:
            slot = into[(g.name, failed)] = [g, [], False]
        ids = [_quote(row["uid"])] if node else [_quote(row["a"]), _quote(row["b"])]
        line = ",".join(ids + [_field(t, k, row[k]) for k, t in cols])
        if "\n" in line or "\r" in line:
            slot[2] = True
        slot[1].append(line)


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _run_key(run_id: str) -> str:
    return hashlib.sha1(run_id.encode()).hexdigest()[:16]


class CsvFolder:
    """A folder of neo4j-admin import files (see the module docstring): reading its parts and runs."""

    def __init__(self, folder: str | os.PathLike):
        self.root = Path(folder).expanduser().resolve()

    @property
    def parts(self) -> Path:
        return self.root / "parts"

    @property
    def headers(self) -> Path:
        return self.root / "headers"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / _run_key(run_id)

    def make(self) -> None:
        try:
            for d in (self.root, self.parts, self.headers, self.root / "runs"):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise StcgError(
                f"cannot write the CSV folder {self.root}: {e.strerror or e}; check --sink csv:DIR"
            ) from None
        if "," in str(self.root):
            raise StcgError(f"the CSV folder {self.root} has a comma in its path, which neo4j-admin cannot read")

    @contextmanager
    def lock(self):
        """The folder's exclusive lock (Run bookkeeping of concurrent commands takes turns)."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def manifests(self) -> list[tuple[Path, dict]]:
        """Committed parts, oldest first (``.tmp-*`` leftovers of killed writes are not parts)."""
        if not self.parts.is_dir():
            return []
        out = []
        for d in sorted(self.parts.iterdir()):
            if d.name.startswith(".") or not (d / "manifest.json").is_file():
                continue
            out.append((d, json.loads((d / "manifest.json").read_text())))
        return out

    def runs(self) -> list[dict]:
        """The Run nodes' properties, one dict per run."""
        root = self.root / "runs"
        if not root.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(root.glob("*/run.json"))]

    def read_run(self, run_id: str) -> dict | None:
        p = self.run_dir(run_id) / "run.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def example_status(self, run_id: str | None = None) -> dict[str, dict[str, str]]:
        """run id -> example id -> 'complete' | 'failed' (complete wins over a failure, as with Bolt's MERGE)."""
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for _, m in self.manifests():
            for run, ex, status in m["examples"]:
                if run_id is not None and run != run_id:
                    continue
                if status == "complete" or out[run].get(ex) != "complete":
                    out[run][ex] = status
        return out

    def write_run(self, props: dict) -> None:
        """``run.json`` and ``Run.csv`` of one run (call under ``lock``)."""
        d = self.run_dir(props["uid"])
        d.mkdir(parents=True, exist_ok=True)
        _write_text(d / "run.json", json.dumps(props, sort_keys=True, indent=1))
        rows: dict = {}
        _encode([props], True, "Run", False, rows)
        ((g, lines, _),) = rows.values()
        _write_text(d / "Run.csv", g.header() + "\n".join(lines) + "\n")


class CsvSink:
    """``--sink csv:DIR``: the pipeline's sink (see ``ingest.pipeline.Neo4jSink``) writing import files.

    Nothing reaches a database; ``stcg load DIR`` imports the folder. The Run's bookkeeping follows the
    Bolt statements of ``ingest.pipeline`` (claim, start, params, finish with the same status rules for
    shard workers), kept in ``runs/<hash>/run.json`` under the folder's lock.
    """

    def __init__(self, folder: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.folder = CsvFolder(folder)
        self.log = log or (lambda s: None)
        self.worker = uuid.uuid4().hex[:12]
        self.nodes_written = self.rels_written = self.retries = 0
        self._seq = 0

    # ------------------------------------------------------------------ run bookkeeping
    def prepare(self) -> None:
        self.folder.make()

    def _check(self, run_id: str, identity: str) -> None:
        from ingest.pipeline import _clash_error, _identity_error, run_name_key

        key = run_name_key(run_id)
        for r in self.folder.runs():
            if r["uid"] != run_id and r.get("name_key") == key:
                raise _clash_error(run_id, r["uid"])
            if r["uid"] == run_id and r.get("identity") not in (None, identity):
                raise _identity_error(run_id)

    def check_run(self, run_id: str, identity: str) -> None:
        self._check(run_id, identity)

    def claim_run(self, run_id: str, identity: str, store_root: str, props: dict) -> str:
        from ingest.pipeline import run_name_key

        with self.folder.lock():
            self._check(run_id, identity)
            run = self.folder.read_run(run_id)
            now = _now()
            if run is None:  # RUN_CLAIM's ON CREATE
                run = {
                    "uid": run_id,
                    "run_id": run_id,
                    "name": run_id,
                    "name_key": run_name_key(run_id),
                    "identity": identity,
                    "store": store_root,
                    "started_at": now,
                }
            has_examples = bool(self.folder.example_status(run_id).get(run_id))
            store = run.get("store") if run.get("store") is not None and has_examples else store_root
            # RUN_START: SET r += $props (a None removes), identity, status, updated_at, store
            for k, v in props.items():
                if v is None:
                    run.pop(k, None)
                else:
                    run[k] = v
            run.update(identity=identity, status="running", updated_at=now, store=store)
            self.folder.write_run(run)
            return store

    def completed(self, run_id: str) -> set[str]:
        status = self.folder.example_status(run_id).get(run_id, {})
        return {ex for ex, s in status.items() if s == "complete"}

    def set_params(self, run_id: str, params: str) -> None:
        with self.folder.lock():
            run = self._run(run_id)
            run.update(params=params, updated_at=_now())
            self.folder.write_run(run)

    def _run(self, run_id: str) -> dict:
        run = self.folder.read_run(run_id)
        if run is None:
            raise StcgError(f"no run {run_id!r} in the CSV folder {self.folder.root}")
        return run

    def finish(self, run_id: str, finished: bool) -> dict:
        """``RUN_FINISH`` on the folder: counts of every part of the run, status, finalised once."""
        with self.folder.lock():
            run = self._run(run_id)
            status = self.folder.example_status(run_id).get(run_id, {})
            complete = sum(1 for s in status.values() if s == "complete")
            failed = sum(1 for s in status.values() if s == "failed")
            before, total = run.get("status"), run.get("n_total")
            done = finished or (total is not None and complete + failed >= total)
            new = "partial" if not done else ("failed" if complete == 0 else "complete")
            now = _now()
            if not (done and before in ("complete", "failed") and not finished):
                run["finished_at"] = now
            run.update(n_complete=complete, n_failed=failed, updated_at=now, status=new)
            self.folder.write_run(run)
        return {
            "complete": complete,
            "failed": failed,
            "status": new,
            "total": total,
            "finalised": done and not finished and before not in ("complete", "failed"),
        }

    # ------------------------------------------------------------------ rows
    def write(self, rows: GraphRows) -> None:
        """One committed part: every row of ``rows`` (payloads through ``flat_rows``), completion markers
        on the Example rows, failure rows in ``.failed`` files; renamed into place in one step."""
        flat = GraphRows()
        for payload in rows.examples:
            flat.extend(flat_rows(payload))
        for k, v in rows.nodes.items():
            flat.nodes[k].extend(v)
        for k, v in rows.rels.items():
            flat.rels[k].extend(v)
        done = set(rows.completes)
        now = _now()
        failed_uids = {r["uid"] for r in flat.nodes.get("Example", []) if r.get("failed") and r["uid"] not in done}
        examples = []
        encoded: dict = {}
        for label, data in flat.nodes.items():
            ok, bad = [], []
            for r in data:
                if label == "Example":
                    if r["uid"] in done:
                        r = {**r, "complete": True, "completed_at": now}
                    examples.append([r["run_id"], r["example_id"], "failed" if r["uid"] in failed_uids else "complete"])
                (bad if label == "Example" and r["uid"] in failed_uids else ok).append(r)
            _encode(ok, True, label, False, encoded)
            _encode(bad, True, label, True, encoded)
        for group, data in flat.rels.items():
            if group == "HAS_EXAMPLE":
                _encode([r for r in data if r["b"] not in failed_uids], False, group, False, encoded)
                _encode([r for r in data if r["b"] in failed_uids], False, group, True, encoded)
            else:
                _encode(data, False, group, False, encoded)
        if not encoded:
            return
        self._commit(encoded, examples)
        self.nodes_written += sum(len(v[1]) for (_, _), v in encoded.items() if v[0].node)
        self.rels_written += sum(len(v[1]) for (_, _), v in encoded.items() if not v[0].node)

    def _commit(self, encoded: dict, examples: list) -> None:
        try:
            for g, _, _ in encoded.values():
                header = self.folder.headers / f"{g.name}.csv"
                if not header.is_file():
                    _write_text(header, g.header())
            self._seq += 1
            name = f"{time.time_ns():020d}-{self.worker}-{self._seq:06d}"
            tmp = self.folder.parts / f".tmp-{name}"
            tmp.mkdir()
            files = {}
            for (gname, failed), (g, lines, multiline) in encoded.items():
                fname = f"{gname}{'.failed' if failed else ''}.csv"
                (tmp / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
                files[fname] = {
                    "group": g.group,
                    "node": g.node,
                    "header": f"{gname}.csv",
                    "rows": len(lines),
                    "failed": failed,
                    "multiline": multiline,
                }
            manifest = {"examples": examples, "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            os.replace(tmp, self.folder.parts / name)
        except OSError as e:
            raise StcgError(f"cannot write import files in {self.folder.root}: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------------- load


def prepare_import(folder: str | os.PathLike, log: Callable[[str], None] = lambda s: None) -> dict:
    """Check a CSV folder and write ``DIR/import.args`` (paths relative to DIR); returns the plan:
    ``{"args": path, "nodes": {label: n}, "relationships": {type: n}, "runs": [...], "dropped": n}``.

    A failure row whose example was written again later (it succeeded, or failed again) is left out
    (filtered copies under ``DIR/.load``), as Bolt's MERGE would replace it. An example written
    complete twice (two commands wrote one run at once) is refused in one line.
    """
    f = CsvFolder(folder)
    if not f.root.is_dir():
        raise StcgError(f"no CSV folder {f.root}; write one with `stcg ingest --sink csv:{folder}`")
    parts = f.manifests()
    runs = f.runs()
    if not parts and not runs:
        raise StcgError(f"{f.root} holds no import files; write them with `stcg ingest --sink csv:{folder}`")
    known = {r["uid"] for r in runs}
    # which part wins each example: a complete one, else the latest failure
    winner: dict[tuple[str, str], tuple[str, str]] = {}
    for d, m in parts:
        for run, ex, status in m["examples"]:
            if run not in known:
                raise StcgError(f"part {d.name} holds run {run!r}, which has no runs/*/run.json in {f.root}")
            prev = winner.get((run, ex))
            if prev is not None and prev[1] == "complete" and status == "complete":
                raise StcgError(
                    f"example {ex!r} of run {run!r} is written complete twice ({prev[0]} and {d.name}: two commands "
                    f"wrote the run at once); delete {f.parts / d.name} and rerun the same `stcg ingest` to redo its rest"
                )
            if prev is None or prev[1] != "complete":
                winner[(run, ex)] = (d.name, status)
    shutil.rmtree(f.root / ".load", ignore_errors=True)
    groups: dict[tuple[bool, str, str], list[str]] = defaultdict(list)  # (node, group, header) -> data files
    multiline: list[str] = []
    nodes, rels = Counter(), Counter()
    dropped = 0
    for d, m in parts:
        lose = {
            f"{run}/{ex}"
            for run, ex, status in m["examples"]
            if status == "failed" and winner[(run, ex)] != (d.name, status)
        }
        for fname, info in m["files"].items():
            path, rows = d / fname, info["rows"]
            if info["failed"] and lose:
                keep = []
                for record in _records(path):
                    fields = next(csv.reader(io.StringIO(record)))
                    if (fields[0] if info["node"] else fields[1]) not in lose:
                        keep.append(record)
                dropped += rows - len(keep)
                rows = len(keep)
                info = {**info, "multiline": any("\n" in r[:-1] or "\r" in r[:-1] for r in keep)}
                path = f.root / ".load" / d.name / fname
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(keep), encoding="utf-8")
            if rows == 0:
                continue
            rel = str(path.relative_to(f.root))
            groups[(info["node"], info["group"], info["header"])].append(rel)
            if info["multiline"]:
                multiline.append(rel)
            if info["node"]:
                nodes[info["group"]] += rows
            else:
                rels[REL_TYPES[info["group"]][1]] += rows
    lines = []
    for r in runs:
        run_csv = f.run_dir(r["uid"]) / "Run.csv"
        lines.append(f"--nodes=Run={run_csv.relative_to(f.root)}")
        nodes["Run"] += 1
    for (node, group, header), files in sorted(groups.items()):
        head = str((f.headers / header).relative_to(f.root))
        if node:
            lines.append(f"--nodes={group}={','.join([head, *files])}")
        else:
            lines.append(f"--relationships={REL_TYPES[group][1]}={','.join([head, *files])}")
    lines += ["--id-type=string", "--array-delimiter=U+001F", "--bad-tolerance=0", "--skip-bad-relationships=false"]
    lines += ["--skip-duplicate-nodes=false"]
    if multiline:
        lines += ["--multiline-fields-format=v2", f"--multiline-fields={','.join(multiline)}"]
    args = f.root / "import.args"
    _write_text(args, "\n".join(lines) + "\n")
    plan = {
        "args": str(args),
        "nodes": dict(sorted(nodes.items())),
        "relationships": dict(sorted(rels.items())),
        "runs": sorted(known),
        "dropped": dropped,
    }
    _write_text(f.root / "import.counts.json", json.dumps(plan, indent=1))
    log(
        f"{f.root}: {len(runs)} runs, {len(parts)} parts, {sum(nodes.values())} nodes, "
        f"{sum(rels.values())} relationships to import"
        + (f" ({dropped} rows of failures that were written again left out)" if dropped else "")
    )
    return plan


def _records(path: Path):
    """The raw text of each CSV record of ``path`` (a quoted field may span lines)."""
    buf, quotes = "", 0
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh:
            buf += line
            quotes += line.count('"')
            if quotes % 2 == 0:
                yield buf
                buf, quotes = "", 0


def _driver(server):
    from neo4j import GraphDatabase

    # no notifications: counting a relationship type a run does not have (NEXT of one-step answers) warns
    return GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password), notifications_min_severity="OFF")


def database_counts(driver, database: str = DATABASE) -> tuple[dict, dict]:
    """({label: nodes}, {type: relationships}) of a database for the STCG labels and types (the fixed
    schema names of ``ingest.rows``, never user text), plus ``"*"``: every node / relationship."""
    types = sorted({t for _, t, _, _ in REL_TYPES.values()})
    with driver.session(database=database) as s:
        nodes = {label: s.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"] for label in NODE_LABELS}
        rels = {t: s.run(f"MATCH ()-[r:{t}]->() RETURN count(r) AS c").single()["c"] for t in types}
        nodes["*"] = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
        rels["*"] = s.run("MATCH ()-[r]->() RETURN count(r) AS c").single()["c"]
    return {k: v for k, v in nodes.items() if v}, {k: v for k, v in rels.items() if v}


def admin_import_command(server, java: str, args_file: Path, report: Path, max_memory: str) -> list[str]:
    """``neo4j-admin database import full @args --overwrite-destination neo4j`` with the server's jars."""
    from stcg.neo4j_runtime.server import ADMIN_CLASS

    return [
        java,
        "-Xmx1g",
        "-cp",
        f"{server.lib}/*",
        f"-Dneo4j.home={server.home}",
        ADMIN_CLASS,
        "database",
        "import",
        "full",
        f"@{args_file}",
        f"--report-file={report}",
        f"--max-off-heap-memory={max_memory}",
        "--overwrite-destination=true",
        DATABASE,
    ]


def _write_stats(server, runs, log) -> tuple[float, int]:
    """The statistics of every imported run that is complete (``ingest.stats``): seconds, Stats nodes."""
    from ingest.stats import write_run_stats
    from ingest.writer import Neo4jWriter

    t0 = time.perf_counter()
    with _driver(server) as driver:
        writer = Neo4jWriter(driver, DATABASE)
        done = writer.run_query(
            "MATCH (r:Run) WHERE r.uid IN $runs AND r.status = 'complete' RETURN r.uid AS uid", runs=list(runs)
        )
        for row in done:
            write_run_stats(writer, row["uid"])
        nodes = writer.run_query("MATCH (x:Stats) RETURN count(x) AS n")[0]["n"]
    seconds = time.perf_counter() - t0
    if done:
        log(f"statistics of {len(done)} complete run(s) written in {seconds:.1f} s ({nodes} Stats nodes)")
    return seconds, nodes


def load_csv(
    folder: str | os.PathLike,
    server,
    log: Callable[[str], None] = print,
    max_memory: str = "2g",
    timeout: float = 180.0,
) -> dict:
    """Import a CSV folder into the local server ``server`` (``LocalNeo4j``): check its database is
    empty, stop it, ``neo4j-admin database import full``, start it, create the schema, compare the
    counts, write the statistics of every complete run (``ingest.stats``; ``stats_nodes``, one
    ``HAS_STATS`` link each, come on top of the imported counts). Returns ``{nodes, relationships,
    import_seconds, stats_seconds, stats_nodes, seconds, runs, counts}``. A database that is not
    empty is refused in one line before anything changes."""
    from ingest.schema import ensure_schema
    from stcg.neo4j_runtime.server import UMASK

    t0 = time.perf_counter()
    plan = prepare_import(folder, log=log)
    server.start(timeout=timeout, log=log)
    with _driver(server) as driver:
        with driver.session(database=DATABASE) as s:
            n = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
    if n:
        raise StcgError(
            f"database {DATABASE} is not empty ({n} nodes); neo4j-admin import needs an empty database in "
            "Community edition — write into it with `stcg ingest` (Bolt) instead"
        )
    java = server.java()
    server.stop(log=log)
    root = CsvFolder(folder).root
    report = server.home / "logs" / "import.report"
    cmd = admin_import_command(server, java, Path(plan["args"]), report, max_memory)
    n_nodes, n_rels = sum(plan["nodes"].values()), sum(plan["relationships"].values())
    log(f"neo4j-admin database import full: {n_nodes} nodes, {n_rels} relationships into {DATABASE} ...")
    env = {**os.environ, "NEO4J_HOME": str(server.home), "NEO4J_CONF": str(server.home / "conf")}
    env.pop("NEO4J_PASSWORD", None)
    ti = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, umask=UMASK
        )
    finally:
        import_seconds = time.perf_counter() - ti
        server.start(timeout=timeout, log=log)
    if proc.returncode != 0:
        text = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "....." not in ln]
        why = next((ln for ln in reversed(text) if "rror" in ln or "xception" in ln), text[-1] if text else "")
        raise StcgError(f"neo4j-admin import failed (exit {proc.returncode}): {why[:300]}; see {report}")
    done = next((ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("IMPORT DONE")), "")
    log(
        f"imported in {import_seconds:.1f} s ({n_rels / max(import_seconds, 1e-9):,.0f} relationships/s; "
        f"neo4j-admin: {done or 'no summary'}); schema ..."
    )
    with _driver(server) as driver:
        ensure_schema(driver, DATABASE)
        nodes, rels = database_counts(driver)
    want_nodes = {**plan["nodes"], **({"*": n_nodes} if n_nodes else {})}
    want_rels = {**plan["relationships"], **({"*": n_rels} if n_rels else {})}
    if nodes != want_nodes or rels != want_rels:
        diff = {
            f"{what} {k}": (want.get(k, 0), got.get(k, 0))
            for what, want, got in (("nodes", want_nodes, nodes), ("relationships", want_rels, rels))
            for k in sorted({*want, *got})
            if want.get(k, 0) != got.get(k, 0)
        }
        raise StcgError(f"the imported counts differ from the files (expected, found): {diff}")
    stats_seconds, stats_nodes = _write_stats(server, plan["runs"], log)
    seconds = time.perf_counter() - t0
    log(
        f"loaded {root} into {DATABASE} on {server.bolt_uri}: {n_nodes} nodes, {n_rels} relationships, "
        f"runs {', '.join(plan['runs'])}; counts checked ({seconds:.1f} s in all)"
    )
    return {
        "nodes": n_nodes,
        "relationships": n_rels,
        "import_seconds": import_seconds,
        "stats_seconds": stats_seconds,
        "stats_nodes": stats_nodes,
        "admin_summary": done,
        "seconds": seconds,
        "runs": plan["runs"],
        "counts": {"nodes": plan["nodes"], "relationships": plan["relationships"]},
    }


__all__ = ["CsvSink", "CsvFolder", "prepare_import", "load_csv", "database_counts"]
