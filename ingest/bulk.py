"""Bulk load: ``stcg ingest --sink csv:DIR`` writes ``neo4j-admin database import`` files, ``stcg load DIR``
imports them into the local server (docs/bulk.md).

The files hold exactly what the Bolt writer would write: the rows come from ``ingest.rows.flat_rows``
(the same uids, labels, relationship types and properties, None left out), the Example completion
markers (``complete``, ``completed_at``) are on the Example rows themselves, and the Run node carries
the properties the Bolt path's Run bookkeeping (``ingest.pipeline``: claim, params, finish) would set.

Layout of DIR (owner-only: folders 0700, files 0600)::

    headers/<GROUP>.<sig>.csv         one header line per node label / relationship group and column
                                      signature (the columns a row has and their types: a property a row
                                      lacks, or holds as None, is absent, as with Bolt's ``SET n += row``)
    parts/<time>-<id>/                one committed batch: data files ``<GROUP>.<sig>[.failed].csv`` (no
                                      header) and ``manifest.json`` (which examples, which files, how many
                                      rows, the longest record in bytes); written in ``parts/.tmp-<id>/`` and
                                      renamed into place, so a killed ingest leaves only whole batches (and
                                      ``.tmp-*`` leftovers, never read)
    runs/<run hash>/run.json          the Run node's properties, changed under ``.lock`` as the Bolt
    runs/<run hash>/Run.csv           statements change them; Run.csv is that node, header and row
    runs/<run hash>/writers.json      the writer leases (``ingest.lease``) of the commands writing the run
    import.args                       written by ``prepare_import``: the neo4j-admin arguments (paths
                                      relative to DIR), for ``stcg load`` and for a Docker container
    .load/                            filtered copies of failure files whose examples later succeeded

ID spaces are per label (``uid:ID(Example)``, ``:START_ID(Token)``), so a uid is unique per label as the
uniqueness constraints require. Several commands (``--shard i/N`` workers) write to one DIR at once:
parts have unique names, header files are identical whoever writes them, and the Run's bookkeeping is
serialised by an exclusive lock on ``DIR/.lock``.

``prepare_import`` trusts nothing in DIR: every folder, file name, group, header, manifest entry and run
must be exactly what ``CsvSink`` writes (no symbolic links, nothing group- or world-writable).

``load_csv`` (``stcg load``) holds an exclusive lock on the server home (``<home>/run/stcg-load.lock``),
moves the database's store folders aside before the import and puts them back if anything fails, and
records its progress in ``<home>/run/stcg-load.json`` so an interrupted load can be finished
(``finish_load``) or undone (``undo_load``).

What neo4j-admin cannot express: an empty list property (written as absent), a list holding an empty
string or the array delimiter U+001F (refused in one line).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest.lease import Lease, busy_error, is_live, overlaps
from ingest.rows import REL_TYPES, GraphRows, flat_rows
from ingest.schema import GRAPH_LABELS
from ingest.statements import statement
from stcg.errors import StcgError
from stcg.filestore import DIR_MODE, FILE_MODE, mkdir_private

ARRAY_DELIMITER = "\x1f"  # U+001F (unit separator): never in our text; neo4j-admin --array-delimiter=U+001F
DATETIME_KEYS = frozenset({"started_at", "updated_at", "finished_at", "completed_at"})
NODE_LABELS = GRAPH_LABELS
PART_LABELS = frozenset(NODE_LABELS) - {"Run"}  # the Run node is in runs/, never in a part
DATABASE = "neo4j"  # Community edition imports into its one user database
MIB = 1 << 20
READ_BUFFER = 4 * MIB  # neo4j-admin's default --read-buffer-size; a larger record gets twice its size
SCALAR_TYPES = frozenset({"boolean", "long", "double", "string", "datetime"})
PART_NAME = re.compile(r"\d{20}-[0-9a-f]{12}-\d{6,}")
DATA_NAME = re.compile(r"([A-Za-z_]+)\.([0-9a-f]{10})(\.failed)?\.csv")
HEADER_NAME = re.compile(r"([A-Za-z_]+)\.([0-9a-f]{10})\.csv")
RUN_DIR_NAME = re.compile(r"[0-9a-f]{16}")
KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILE_INFO = {"group": str, "node": bool, "header": str, "rows": int, "failed": bool, "multiline": bool}
STATUSES = ("complete", "failed")


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


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` owner-only, never through a link nor over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically and owner-only (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        _write_new(tmp, text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_text(path: Path) -> str:
    """The text of ``path``, never through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, encoding="utf-8", newline="") as fh:
        return fh.read()


def _max_record(lines: list[str]) -> int:
    """The size in bytes of the longest of ``lines`` (UTF-8)."""
    return max((len(ln) if ln.isascii() else len(ln.encode("utf-8")) for ln in lines), default=0)


def read_buffer_size(max_record: int) -> int:
    """neo4j-admin's ``--read-buffer-size`` for records of up to ``max_record`` bytes: its default 4 MiB,
    or twice the longest record rounded up to whole MiB."""
    return max(READ_BUFFER, -(-2 * max_record // MIB) * MIB)


def _run_key(run_id: str) -> str:
    return hashlib.sha1(run_id.encode()).hexdigest()[:16]


def _run_csv(props: dict) -> tuple[str, bool]:
    """The text of ``Run.csv`` for the Run properties ``props`` (header and row), and whether it spans lines."""
    rows: dict = {}
    _encode([props], True, "Run", False, rows)
    ((g, lines, multiline),) = rows.values()
    return g.header() + "\n".join(lines) + "\n", multiline


def _unsafe(path: Path, st: os.stat_result) -> str | None:
    """Why ``path`` (lstat ``st``) may not be in a CSV folder, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (a CSV folder holds real files and folders only)"
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return "is neither a plain file nor a folder"
    if st.st_mode & 0o022:
        return f"is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}; make it owner-only: chmod go-w)"
    return None


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

    def _refuse(self, path: Path, why: str) -> StcgError:
        return StcgError(f"refusing the CSV folder {self.root}: {path} {why}")

    def check_safe(self, deep: bool = False) -> None:
        """Refuse the folder (one line) when it, or a folder below it (``deep``: anything below it), is a
        symbolic link or group- or world-writable."""
        top = [self.root, self.parts, self.headers, self.root / "runs", self.root / ".load", self.root / ".lock"]
        for p in top:
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            why = _unsafe(p, st)
            if why:
                raise self._refuse(p, why)
        if not deep:
            return

        def fail(e: OSError):
            raise StcgError(f"cannot read the CSV folder {self.root}: {e.filename}: {e.strerror or e}")

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=fail):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                why = _unsafe(p, os.lstat(p))
                if why:
                    raise self._refuse(p, why)

    def make(self) -> None:
        try:
            mkdir_private(self.root)
            if not self.root.is_dir():
                raise StcgError(f"the CSV folder {self.root} is not a folder; check --sink csv:DIR")
            self.check_safe()
            for d in (self.parts, self.headers, self.root / "runs"):
                if not d.is_dir():
                    d.mkdir(mode=DIR_MODE, exist_ok=True)
            self.check_safe()
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            _write_new(probe, b"")
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
        path = self.root / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            why = "is a symbolic link" if e.errno == errno.ELOOP else f"cannot be opened: {e.strerror or e}"
            raise StcgError(f"the CSV folder's lock file {path} {why}; remove it") from None
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
            out.append((d, json.loads(_read_text(d / "manifest.json"))))
        return out

    def runs(self) -> list[dict]:
        """The Run nodes' properties, one dict per run."""
        root = self.root / "runs"
        if not root.is_dir():
            return []
        return [json.loads(_read_text(p)) for p in sorted(root.glob("*/run.json"))]

    def read_run(self, run_id: str) -> dict | None:
        p = self.run_dir(run_id) / "run.json"
        return json.loads(_read_text(p)) if p.is_file() else None

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
        if not d.is_dir():
            d.mkdir(mode=DIR_MODE)
        text, _ = _run_csv(props)
        _write_text(d / "run.json", json.dumps(props, sort_keys=True, indent=1))
        _write_text(d / "Run.csv", text)

    def read_leases(self, run_id: str) -> dict[str, dict]:
        """``runs/<hash>/writers.json``: lease uid -> ``{uid, host, pid, shard, heartbeat}`` (epoch seconds)."""
        try:
            data = json.loads(_read_text(self.run_dir(run_id) / "writers.json"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_leases(self, run_id: str, leases: dict[str, dict]) -> None:
        _write_text(self.run_dir(run_id) / "writers.json", json.dumps(leases, sort_keys=True, indent=1))


def _live_leases(leases: dict[str, dict], own: str | None = None) -> list[tuple[dict, float]]:
    """The live leases of ``leases`` other than ``own`` as ``(lease, heartbeat age in s)``; dead ones are
    removed from ``leases``."""
    now, live = time.time(), []
    for uid, w in list(leases.items()):
        if uid == own:
            continue
        try:
            age = now - float(w["heartbeat"])
            alive = is_live(str(w["host"]), int(w["pid"]), age)
        except (KeyError, TypeError, ValueError):
            alive = False
        if alive:
            live.append((w, age))
        else:
            del leases[uid]
    return live


class CsvSink:
    """``--sink csv:DIR``: the pipeline's sink (see ``ingest.pipeline.Neo4jSink``) writing import files.

    Nothing reaches a database; ``stcg load DIR`` imports the folder. The Run's bookkeeping follows the
    Bolt statements of ``ingest.pipeline`` (claim, start, params, finish with the same status rules for
    shard workers), kept in ``runs/<hash>/run.json`` under the folder's lock, and so do the writer
    leases (``ingest.lease``; kept in ``runs/<hash>/writers.json``, never on the Run node).
    """

    def __init__(self, folder: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.folder = CsvFolder(folder)
        self.log = log or (lambda s: None)
        self.worker = uuid.uuid4().hex[:12]
        self.nodes_written = self.rels_written = self.retries = 0
        self._seq = 0
        self._lease: Lease | None = None

    # ------------------------------------------------------------------ run bookkeeping
    def prepare(self) -> None:
        self.folder.make()

    def _check(self, run_id: str, identity: str) -> None:
        from ingest.runs import clash_error, identity_error, run_name_key

        key = run_name_key(run_id)
        for r in self.folder.runs():
            if r["uid"] != run_id and r.get("name_key") == key:
                raise clash_error(run_id, r["uid"])
            if r["uid"] == run_id and r.get("identity") not in (None, identity):
                raise identity_error(run_id)

    def check_run(self, run_id: str, identity: str) -> None:
        self._check(run_id, identity)

    def claim_run(self, run_id: str, identity: str, store_root: str, props: dict, lease: Lease | None = None) -> str:
        """Check the name and identity and create (or resume) the run; with ``lease``, take it (dead leases
        dropped), refused in one line while a live lease of another command writes the same examples."""
        from ingest.runs import run_name_key

        with self.folder.lock():
            self._check(run_id, identity)
            leases = self.folder.read_leases(run_id)
            if lease is not None:
                for other, age in _live_leases(leases, own=lease.uid):
                    if overlaps(other.get("shard"), lease.shard):
                        raise busy_error(run_id, other, age)
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
            if lease is not None:
                self._lease = lease
                leases[lease.uid] = {**lease.as_dict(), "heartbeat": time.time()}
                self.folder.write_leases(run_id, leases)
            return store

    def heartbeat(self, run_id: str, lease_uid: str) -> None:
        """Refresh this command's lease; a lease found gone (judged dead meanwhile) is taken again and the
        run is 'running' again, as ``ingest.lease.LEASE_BEAT`` does over Bolt."""
        if self._lease is None or self._lease.uid != lease_uid:
            raise StcgError(f"no lease {lease_uid} taken by this sink")
        with self.folder.lock():
            leases = self.folder.read_leases(run_id)
            if lease_uid not in leases:
                run = self._run(run_id)
                run.update(status="running", updated_at=_now())
                self.folder.write_run(run)
            leases[lease_uid] = {**self._lease.as_dict(), "heartbeat": time.time()}
            self.folder.write_leases(run_id, leases)

    def release(self, run_id: str, lease_uid: str) -> None:
        """End a lease without finishing the run (the command stops on an error)."""
        with self.folder.lock():
            leases = self.folder.read_leases(run_id)
            if leases.pop(lease_uid, None) is not None:
                self.folder.write_leases(run_id, leases)

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

    def finish(self, run_id: str, finished: bool, lease_uid: str | None = None) -> dict:
        """``RUN_FINISH`` on the folder: this command's lease ends, counts of every part of the run, status,
        finalised once; while another command holds a live lease the run stays 'running'."""
        with self.folder.lock():
            run = self._run(run_id)
            leases = self.folder.read_leases(run_id)
            held = len(leases)
            leases.pop(lease_uid, None)
            live = _live_leases(leases)
            if len(leases) != held:
                self.folder.write_leases(run_id, leases)
            status = self.folder.example_status(run_id).get(run_id, {})
            complete = sum(1 for s in status.values() if s == "complete")
            failed = sum(1 for s in status.values() if s == "failed")
            before, total = run.get("status"), run.get("n_total")
            done = not live and (finished or (total is not None and complete + failed >= total))
            if live:
                new = "running"
            else:
                new = "partial" if not done else ("failed" if complete == 0 else "complete")
            now = _now()
            if not (done and before in ("complete", "failed") and not finished):
                run["finished_at"] = now
            run.update(n_complete=complete, n_failed=failed, updated_at=now, status=new)
            self.folder.write_run(run)
        if lease_uid is not None and self._lease is not None and self._lease.uid == lease_uid:
            self._lease = None
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
            tmp.mkdir(mode=DIR_MODE)
            files, longest = {}, 0
            for (gname, failed), (g, lines, multiline) in encoded.items():
                fname = f"{gname}{'.failed' if failed else ''}.csv"
                _write_new(tmp / fname, ("\n".join(lines) + "\n").encode("utf-8"))
                longest = max(longest, _max_record(lines))
                files[fname] = {
                    "group": g.group,
                    "node": g.node,
                    "header": f"{gname}.csv",
                    "rows": len(lines),
                    "failed": failed,
                    "multiline": multiline,
                }
            manifest = {"examples": examples, "files": files, "max_record_bytes": longest}
            _write_new(tmp / "manifest.json", json.dumps(manifest).encode("utf-8"))
            os.replace(tmp, self.folder.parts / name)
        except OSError as e:
            raise StcgError(f"cannot write import files in {self.folder.root}: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------------- load


def _parse_header(text: str, group: str, node: bool) -> _Group | None:
    """The ``_Group`` whose header CsvSink writes as exactly ``text``, or None."""
    if not text.endswith("\n") or text.count("\n") != 1 or "\r" in text:
        return None
    fields = text[:-1].split(",")
    skip = ("uid",) if node else ("a", "b")
    cols = []
    for field in fields[1 if node else 2 :]:
        key, sep, kind = field.partition(":")
        if not sep or not KEY_NAME.fullmatch(key) or key in skip or kind.removesuffix("[]") not in SCALAR_TYPES:
            return None
        cols.append((key, kind))
    keys = [k for k, _ in cols]
    if keys != sorted(set(keys)):
        return None
    g = _Group(group, tuple(cols), node)
    return g if g.header() == text else None


def _load_json(folder: CsvFolder, path: Path):
    try:
        return json.loads(_read_text(path))
    except (OSError, ValueError) as e:
        raise folder._refuse(path, f"is not readable JSON ({getattr(e, 'strerror', None) or e})") from None


def _checked_parts(f: CsvFolder) -> tuple[list[tuple[Path, dict]], int]:
    """The committed parts of ``f`` as ``[(folder, manifest)]``, each checked to be exactly what ``CsvSink``
    writes, and the longest record (bytes) they declare; one-line refusal naming the first offending file."""
    refuse = f._refuse
    headers: dict[str, bool] = {}  # header file name -> node
    parts, longest = [], 0
    if not f.parts.is_dir():
        return [], 0
    for d in sorted(f.parts.iterdir()):
        if d.name.startswith(".tmp-"):
            continue  # a killed write's leftover, never read
        if not PART_NAME.fullmatch(d.name) or not d.is_dir():
            raise refuse(d, "is not a part folder `stcg ingest --sink csv:` writes")
        m = _load_json(f, d / "manifest.json")
        if not isinstance(m, dict) or not {"examples", "files"} <= set(m) <= {"examples", "files", "max_record_bytes"}:
            raise refuse(d / "manifest.json", "is not a manifest `stcg ingest --sink csv:` writes")
        for entry in m["examples"] if isinstance(m["examples"], list) else [None]:
            if not (
                isinstance(entry, list)
                and len(entry) == 3
                and all(isinstance(x, str) and x for x in entry)
                and entry[2] in STATUSES
            ):
                raise refuse(
                    d / "manifest.json", f"has an examples entry that is not [run, example, status]: {entry!r}"
                )
        size = m.get("max_record_bytes", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise refuse(d / "manifest.json", f"has a max_record_bytes that is not a byte count: {size!r}")
        longest = max(longest, size)
        files = m["files"]
        if not isinstance(files, dict):
            raise refuse(d / "manifest.json", "has no files table")
        for entry in sorted(p.name for p in d.iterdir()):
            if entry != "manifest.json" and entry not in files:
                raise refuse(d / entry, "is not listed in its part's manifest.json")
        for fname, info in files.items():
            name = DATA_NAME.fullmatch(fname) if isinstance(fname, str) else None
            if name is None:
                raise refuse(d / "manifest.json", f"lists {fname!r}, which is not a data file name CsvSink writes")
            group, sig, failed = name.group(1), name.group(2), bool(name.group(3))
            node = group in PART_LABELS
            ok = (
                isinstance(info, dict)
                and set(info) == set(FILE_INFO)
                and all(type(info[k]) is t for k, t in FILE_INFO.items())
                and (node or group in REL_TYPES)
                and info["group"] == group
                and info["node"] is node
                and info["failed"] is failed
                and info["header"] == f"{group}.{sig}.csv"
                and info["rows"] >= 0
            )
            if not ok:
                raise refuse(d / "manifest.json", f"has an entry for {fname} that CsvSink does not write: {info!r}")
            path = d / fname
            st = os.lstat(path) if os.path.lexists(path) else None
            if st is None or not stat.S_ISREG(st.st_mode) or not path.resolve().is_relative_to(f.root):
                raise refuse(path, "is not a plain file in its part folder")
            header = info["header"]
            if header not in headers:
                hpath = f.headers / header
                if not hpath.is_file() or hpath.is_symlink():
                    raise refuse(hpath, f"is missing (the header of {path})")
                try:
                    g = _parse_header(_read_text(hpath), group, node)
                except (OSError, UnicodeError) as e:
                    raise refuse(hpath, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
                if g is None or g.sig != sig:
                    raise refuse(hpath, f"is not the header CsvSink writes for group {group} and signature {sig}")
                headers[header] = node
        parts.append((d, m))
    return parts, longest


def _checked_runs(f: CsvFolder) -> list[tuple[Path, dict, bool]]:
    """``[(Run.csv, properties, multiline)]`` of every run, each checked: ``run.json`` a dict whose uid
    hashes to its folder, ``Run.csv`` exactly what ``write_run`` writes from it."""
    refuse, out = f._refuse, []
    root = f.root / "runs"
    if not root.is_dir():
        return []
    for d in sorted(root.iterdir()):
        if not RUN_DIR_NAME.fullmatch(d.name) or not d.is_dir():
            raise refuse(d, "is not a run folder `stcg ingest --sink csv:` writes")
        names = {p.name for p in d.iterdir() if not p.name.startswith(".tmp-")}
        if names - {"run.json", "Run.csv", "writers.json"}:
            raise refuse(
                d / sorted(names - {"run.json", "Run.csv", "writers.json"})[0], "is not a file of a run folder"
            )
        if "run.json" not in names:
            continue  # a claim killed between its folder and its file: no run yet
        props = _load_json(f, d / "run.json")
        if not isinstance(props, dict) or not isinstance(props.get("uid"), str) or _run_key(props["uid"]) != d.name:
            raise refuse(d / "run.json", f"does not hold the Run whose uid hashes to {d.name}")
        try:
            want, multiline = _run_csv(props)
        except StcgError as e:
            raise refuse(d / "run.json", f"holds a property CSV import cannot hold ({e})") from None
        try:
            same = _read_text(d / "Run.csv") == want
        except (OSError, UnicodeError):
            same = False
        if not same:
            raise refuse(d / "Run.csv", f"is not what `stcg ingest` writes from {d / 'run.json'}")
        out.append((d / "Run.csv", props, multiline))
    return out


def prepare_import(folder: str | os.PathLike, log: Callable[[str], None] = lambda s: None) -> dict:
    """Check a CSV folder and write ``DIR/import.args`` (paths relative to DIR); returns the plan:
    ``{"args": path, "nodes": {label: n}, "relationships": {type: n}, "runs": [...], "dropped": n,
    "read_buffer": bytes}``.

    Nothing in the folder is trusted: anything but what ``CsvSink`` writes (a link, a name, group, header,
    manifest entry or run it would not write, a group- or world-writable file) is refused in one line
    naming the file. A failure row whose example was written again later (it succeeded, or failed again)
    is left out (filtered copies under ``DIR/.load``), as Bolt's MERGE would replace it. An example
    written complete twice (two commands wrote one run at once) is refused in one line.
    """
    f = CsvFolder(folder)
    if not f.root.is_dir():
        raise StcgError(f"no CSV folder {f.root}; write one with `stcg ingest --sink csv:{folder}`")
    if "," in str(f.root):
        raise StcgError(f"the CSV folder {f.root} has a comma in its path, which neo4j-admin cannot read")
    f.check_safe(deep=True)
    parts, longest = _checked_parts(f)
    run_files = _checked_runs(f)
    runs = [props for _, props, _ in run_files]
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
                mkdir_private(path.parent)
                _write_new(path, "".join(keep).encode("utf-8"))
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
    for run_csv, _, spans in run_files:
        rel = str(run_csv.relative_to(f.root))
        lines.append(f"--nodes=Run={rel}")
        if spans:
            multiline.append(rel)
        nodes["Run"] += 1
        longest = max(longest, run_csv.stat().st_size)
    for (node, group, header), files in sorted(groups.items()):
        head = str((f.headers / header).relative_to(f.root))
        if node:
            lines.append(f"--nodes={group}={','.join([head, *files])}")
        else:
            lines.append(f"--relationships={REL_TYPES[group][1]}={','.join([head, *files])}")
    buffer = read_buffer_size(longest)
    lines += ["--id-type=string", "--array-delimiter=U+001F", "--bad-tolerance=0", "--skip-bad-relationships=false"]
    lines += ["--skip-duplicate-nodes=false", f"--read-buffer-size={buffer // MIB}m"]
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
        "read_buffer": buffer,
    }
    _write_text(f.root / "import.counts.json", json.dumps(plan, indent=1))
    log(
        f"{f.root}: {len(runs)} runs, {len(parts)} parts, {sum(nodes.values())} nodes, "
        f"{sum(rels.values())} relationships to import"
        + (f" ({dropped} rows of failures that were written again left out)" if dropped else "")
        + (f"; records up to {longest:,} bytes (read buffer {buffer // MIB} MiB)" if buffer > READ_BUFFER else "")
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
        nodes["*"] = s.run(statement("count_nodes")).single()["c"]
        rels["*"] = s.run(statement("count_relationships")).single()["c"]
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
        done = writer.run_query(statement("complete_runs"), runs=list(runs))
        for row in done:
            write_run_stats(writer, row["uid"])
        nodes = writer.run_query(statement("count_stats_nodes"))[0]["c"]
    seconds = time.perf_counter() - t0
    if done:
        log(f"statistics of {len(done)} complete run(s) written in {seconds:.1f} s ({nodes} Stats nodes)")
    return seconds, nodes


# ------------------------------------------------------------------------------- load: lock and record
LOAD_LOCK = "stcg-load.lock"  # <home>/run/: held by the one `stcg load` working on the home
LOAD_RECORD = "stcg-load.json"  # <home>/run/: a load in progress (removed when it ends, done or undone)
ASIDE = ".stcg-before-load"  # data/databases/neo4j -> data/databases/neo4j.stcg-before-load while loading
STORE_DIRS = ("databases", "transactions")
STEPS = {
    "stopping": "while it stopped the server, before its import",
    "importing": "during its neo4j-admin import",
    "imported": "after its import, before the schema, the count check and the statistics",
    "cleaning": "after it had finished, while it removed the copy of the database from before it",
}


def _store_dirs(server) -> list[tuple[Path, Path]]:
    """``[(store folder, its aside copy)]`` of the database: its store and its transaction logs."""
    data = server.home / "data"
    return [(data / sub / DATABASE, data / sub / f"{DATABASE}{ASIDE}") for sub in STORE_DIRS]


def _record_path(server) -> Path:
    return server.home / "run" / LOAD_RECORD


def read_load_record(home: str | os.PathLike) -> dict | None:
    """The record of a ``stcg load`` in progress (or interrupted) in server home ``home``, or None."""
    path = Path(home) / "run" / LOAD_RECORD
    try:
        rec = json.loads(_read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StcgError(
            f"the load record {path} cannot be read ({getattr(e, 'strerror', None) or e}); remove it"
        ) from None
    return rec if isinstance(rec, dict) else {}


def _write_record(server, rec: dict, **changes) -> dict:
    rec.update(changes, updated=_now())
    _write_text(_record_path(server), json.dumps(rec, indent=1))
    return rec


@contextmanager
def load_lock(home: str | os.PathLike):
    """The exclusive, non-blocking lock of one ``stcg load`` on a server home (``<home>/run/stcg-load.lock``,
    holding the holder's pid); a second one is refused in one line before it changes anything."""
    home = Path(home)
    path = home / "run" / LOAD_LOCK
    try:
        mkdir_private(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        raise StcgError(f"cannot open the load lock {path}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StcgError(
                f"another `stcg load` (pid {holder}) is loading into the Neo4j home {home}; wait for it to end "
                "(this one changed nothing)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def load_command(server, *options: str) -> str:
    """``stcg load OPTIONS`` for ``server``'s home and ports (the defaults left out), quoted for messages."""
    from stcg.config import local_home

    words = ["stcg", "load", *options]
    if server.home != local_home():
        words += ["--home", str(server.home)]
    if (server.bolt_port, server.http_port) != (7687, 7474):
        words += ["--bolt-port", str(server.bolt_port), "--http-port", str(server.http_port)]
    return f"`{' '.join(words)}`"


def _interrupted(server, rec: dict) -> StcgError:
    """The one line saying what an interrupted load left, and how to finish or undo it."""
    step = rec.get("step")
    what = (
        f"a `stcg load` of {rec.get('folder')} into the Neo4j home {server.home} (pid {rec.get('pid')}, "
        f"started {rec.get('started')}) was interrupted {STEPS.get(step, f'at step {step!r}')}"
    )
    finish, undo = load_command(server, "--finish"), load_command(server, "--undo")
    if step == "imported":
        how = (
            f"{finish} finishes it (starts the server, creates the schema, checks the counts against its "
            f"import.counts.json, writes the statistics); {undo} puts the database back as it was before it"
        )
    elif step == "cleaning":
        how = f"the database is loaded; {finish} removes what it left"
    else:
        how = f"{undo} puts the database back as it was before it; then run `stcg load` again"
    return StcgError(f"{what}: {how}")


def _admin_alive(rec: dict) -> bool:
    """Whether the neo4j-admin process of an interrupted load still runs."""
    from stcg.neo4j_runtime.server import ADMIN_CLASS

    pid = rec.get("admin_pid")
    if not isinstance(pid, int) or rec.get("host") != socket.gethostname():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return ADMIN_CLASS.encode() in cmdline and str(rec.get("home", "")).encode() in cmdline


def _die_with_parent():
    """A ``preexec_fn`` that has neo4j-admin killed with its ``stcg load`` (Linux ``PR_SET_PDEATHSIG``), or
    None where there is no ``prctl``. Resolved in the parent: the child only calls it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _wait_online(server, timeout: float) -> int:
    """Nodes in the database once it answers (a database still starting is waited for); a neo4j error
    once ``timeout`` has passed."""
    from neo4j.exceptions import DatabaseUnavailable

    deadline = time.monotonic() + timeout
    with _driver(server) as driver:
        while True:
            try:
                with driver.session(database=DATABASE) as s:
                    return s.run(statement("count_nodes")).single()["c"]
            except DatabaseUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _put_back(server, log, timeout: float) -> int:
    """Stop the server, put the database's aside folders back in place of what a load left, start it;
    returns the database's node count."""
    server.stop(log=log)
    for cur, aside in _store_dirs(server):
        if aside.is_dir() and not aside.is_symlink():
            if cur.is_symlink() or cur.is_file():
                cur.unlink()
            elif cur.exists():
                shutil.rmtree(cur)
            os.rename(aside, cur)
    server.start(timeout=timeout, log=log)
    return _wait_online(server, min(timeout, 60.0))


def _clean(server, rec: dict) -> None:
    """The load is done: drop the database's aside folders, then the record."""
    _write_record(server, rec, step="cleaning")
    for _, aside in _store_dirs(server):
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
    _record_path(server).unlink(missing_ok=True)


def _describe(e: BaseException) -> str:
    """One line for an error of a load step."""
    from neo4j.exceptions import DriverError, Neo4jError

    if isinstance(e, StcgError):
        return str(e)
    if isinstance(e, Neo4jError):
        return f"Neo4j: {e.code}: {' '.join(str(e.message).split())[:300]}"
    if isinstance(e, DriverError):
        return f"Neo4j driver: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
    if isinstance(e, OSError):
        return f"{e.filename or ''}: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def _complete_load(server, plan: dict, log, timeout: float) -> dict:
    """After a successful import: start the server, create the schema, compare the counts with ``plan``
    (Stats nodes of an earlier try left out), write the statistics of every complete run."""
    from ingest.schema import ensure_schema

    server.start(timeout=timeout, log=log)
    _wait_online(server, min(timeout, 60.0))
    n_nodes, n_rels = sum(plan["nodes"].values()), sum(plan["relationships"].values())
    with _driver(server) as driver:
        ensure_schema(driver, DATABASE)
        nodes, rels = database_counts(driver)
        with driver.session(database=DATABASE) as s:  # statistics of an earlier `--finish` that was cut short
            nodes["*"] = nodes.get("*", 0) - s.run(statement("count_stats_nodes")).single()["c"]
            rels["*"] = rels.get("*", 0) - s.run(statement("count_stats_links")).single()["c"]
    nodes = {k: v for k, v in nodes.items() if v}
    rels = {k: v for k, v in rels.items() if v}
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
    return {"nodes": n_nodes, "relationships": n_rels, "stats_seconds": stats_seconds, "stats_nodes": stats_nodes}


def _import(server, rec: dict, java: str, max_memory: str, log) -> tuple[float, str]:
    """``neo4j-admin database import full`` of the load ``rec`` (the server stopped, the store moved
    aside), killed with its ``stcg load``; (seconds, neo4j-admin's summary line), one-line error if it fails."""
    from stcg.neo4j_runtime.server import UMASK

    plan = rec["plan"]
    report = server.home / "logs" / "import.report"
    cmd = admin_import_command(server, java, Path(plan["args"]), report, max_memory)
    n_nodes, n_rels = sum(plan["nodes"].values()), sum(plan["relationships"].values())
    log(f"neo4j-admin database import full: {n_nodes} nodes, {n_rels} relationships into {DATABASE} ...")
    env = {**os.environ, "NEO4J_HOME": str(server.home), "NEO4J_CONF": str(server.home / "conf")}
    env.pop("NEO4J_PASSWORD", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=rec["folder"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        umask=UMASK,
        preexec_fn=_die_with_parent(),
    )
    try:
        _write_record(server, rec, step="importing", admin_pid=proc.pid)
        out, err = proc.communicate()
    except BaseException:
        proc.kill()  # interrupted: neo4j-admin ends before anything is put back
        proc.wait()
        raise
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        text = [ln.strip() for ln in (out + err).splitlines() if ln.strip() and "....." not in ln]
        why = next((ln for ln in reversed(text) if "rror" in ln or "xception" in ln), text[-1] if text else "")
        raise StcgError(f"neo4j-admin import failed (exit {proc.returncode}): {why[:300]}; see {report}")
    _write_record(server, rec, step="imported", admin_pid=None)
    done = next((ln.strip() for ln in out.splitlines() if ln.startswith("IMPORT DONE")), "")
    log(
        f"imported in {seconds:.1f} s ({n_rels / max(seconds, 1e-9):,.0f} relationships/s; "
        f"neo4j-admin: {done or 'no summary'}); schema ..."
    )
    return seconds, done


def load_csv(
    folder: str | os.PathLike,
    server,
    log: Callable[[str], None] = print,
    max_memory: str = "2g",
    timeout: float = 180.0,
) -> dict:
    """Import a CSV folder into the local server ``server`` (``LocalNeo4j``): check its database is
    empty, stop it, move the database's store folders aside, ``neo4j-admin database import full``,
    start it, create the schema, compare the counts, write the statistics of every complete run
    (``ingest.stats``; ``stats_nodes``, one ``HAS_STATS`` link each, come on top of the imported
    counts), then drop the aside folders. Returns ``{nodes, relationships, import_seconds,
    stats_seconds, stats_nodes, seconds, runs, counts}``.

    Refused in one line before anything changes: a database that is not empty, another load of the same
    home (``load_lock``), an interrupted load (``<home>/run/stcg-load.json``: ``finish_load`` or
    ``undo_load``). A load that fails after the server stopped puts the database back as it was."""
    t0 = time.perf_counter()
    with load_lock(server.home):
        rec = read_load_record(server.home)
        if rec is not None:
            raise _interrupted(server, rec)
        plan = prepare_import(folder, log=log)
        root = CsvFolder(folder).root
        server.start(timeout=timeout, log=log)
        with _driver(server) as driver:
            with driver.session(database=DATABASE) as s:
                n = s.run(statement("count_nodes")).single()["c"]
        if n:
            raise StcgError(
                f"database {DATABASE} is not empty ({n} nodes); neo4j-admin import needs an empty database in "
                "Community edition — write into it with `stcg ingest` (Bolt) instead"
            )
        java = server.java()
        for _, aside in _store_dirs(server):
            if aside.exists() or aside.is_symlink():
                raise StcgError(f"{aside} is left from an earlier `stcg load`; move it away and run this again")
        rec = {
            "folder": str(root),
            "home": str(server.home),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _now(),
            "admin_pid": None,
            "plan": plan,
        }
        _write_record(server, rec, step="stopping")
        try:
            server.stop(log=log)
            for cur, aside in _store_dirs(server):
                if cur.exists():
                    os.rename(cur, aside)
            import_seconds, done = _import(server, rec, java, max_memory, log)
            checked = _complete_load(server, plan, log, timeout)
        except BaseException as e:
            if not isinstance(e, Exception | KeyboardInterrupt):
                raise  # SystemExit and the like: the record tells the next `stcg load` what to do
            _roll_back(server, rec, e, log, timeout)
            raise
        _clean(server, rec)
    n_nodes, n_rels = checked["nodes"], checked["relationships"]
    seconds = time.perf_counter() - t0
    log(
        f"loaded {root} into {DATABASE} on {server.bolt_uri}: {n_nodes} nodes, {n_rels} relationships, "
        f"runs {', '.join(plan['runs'])}; counts checked ({seconds:.1f} s in all)"
    )
    return {
        "nodes": n_nodes,
        "relationships": n_rels,
        "import_seconds": import_seconds,
        "stats_seconds": checked["stats_seconds"],
        "stats_nodes": checked["stats_nodes"],
        "admin_summary": done,
        "seconds": seconds,
        "runs": plan["runs"],
        "counts": {"nodes": plan["nodes"], "relationships": plan["relationships"]},
    }


def _roll_back(server, rec: dict, e: BaseException, log, timeout: float) -> None:
    """A load failed after it stopped the server: put the database back as it was, then raise ``e`` as
    one line saying so (a neo4j error, too); a roll-back that fails says to run ``stcg load --undo``."""
    why = _describe(e)
    try:
        n = _put_back(server, log, timeout)
        _record_path(server).unlink(missing_ok=True)
    except Exception as e2:
        raise StcgError(
            f"{why}; putting the database back as it was failed too ({_describe(e2)}): run "
            f"{load_command(server, '--undo')}"
        ) from None
    if isinstance(e, KeyboardInterrupt):
        log(f"interrupted: the database was put back as it was before this load ({n} nodes)")
        return
    raise StcgError(
        f"{why}; the database was put back as it was before this load ({n} nodes, online): "
        f"fix the cause and run {load_command(server, rec['folder'])} again",
        exit_code=getattr(e, "exit_code", None),
    ) from None


def _recorded(server, folder, what: str) -> dict:
    rec = read_load_record(server.home)
    if rec is None:
        raise StcgError(f"no interrupted `stcg load` in the Neo4j home {server.home}: nothing to {what}")
    if folder is not None and str(CsvFolder(folder).root) != rec.get("folder"):
        raise StcgError(
            f"the interrupted `stcg load` in the Neo4j home {server.home} loaded {rec.get('folder')}, not "
            f"{CsvFolder(folder).root}; run {load_command(server, '--' + what)} without a folder"
        )
    if _admin_alive(rec):
        raise StcgError(
            f"the neo4j-admin import (pid {rec['admin_pid']}) of the interrupted `stcg load` of {rec.get('folder')} "
            "still runs; wait for it to end, then run this again"
        )
    return rec


def finish_load(server, folder=None, log: Callable[[str], None] = print, timeout: float = 180.0) -> dict:
    """``stcg load --finish``: complete a load interrupted after its import (start the server, create the
    schema, check the counts against its plan, write the statistics) or during its clean-up; refused in
    one line when the import itself did not finish. Returns ``{nodes, relationships, stats_nodes}``."""
    with load_lock(server.home):
        rec = _recorded(server, folder, "finish")
        step = rec.get("step")
        if step == "cleaning":
            _clean(server, rec)
            server.start(timeout=timeout, log=log)
            log(f"finished the load of {rec.get('folder')}: removed the copy of the database from before it")
            return {"nodes": None, "relationships": None, "stats_nodes": None}
        if step != "imported" or not isinstance(rec.get("plan"), dict):
            raise StcgError(
                f"the interrupted `stcg load` of {rec.get('folder')} stopped {STEPS.get(step, f'at step {step!r}')}: "
                f"it cannot be finished; {load_command(server, '--undo')} puts the database back as it was before "
                "it, then run `stcg load` again"
            )
        try:
            checked = _complete_load(server, rec["plan"], log, timeout)
        except Exception as e:
            raise StcgError(
                f"{_describe(e)}; the load is not finished: {load_command(server, '--undo')} puts the database "
                "back as it was before it"
            ) from None
        _clean(server, rec)
    log(
        f"finished the load of {rec['folder']} into {DATABASE} on {server.bolt_uri}: {checked['nodes']} nodes, "
        f"{checked['relationships']} relationships, runs {', '.join(rec['plan']['runs'])}; counts checked"
    )
    return checked


def undo_load(server, folder=None, log: Callable[[str], None] = print, timeout: float = 180.0) -> int:
    """``stcg load --undo``: put the database back as it was before an interrupted load (stop the server,
    remove what the load left, move the aside folders back, start it); returns its node count."""
    with load_lock(server.home):
        rec = _recorded(server, folder, "undo")
        step = rec.get("step")
        if step == "cleaning":
            raise StcgError(
                f"the `stcg load` of {rec.get('folder')} had finished (only its clean-up was interrupted) and the "
                f"copy of the database from before it is partly removed: {load_command(server, '--finish')} "
                "completes the clean-up"
            )
        store = _store_dirs(server)[0][1]  # the store itself (its transaction logs may have had none)
        if step in ("importing", "imported") and not store.is_dir():
            raise StcgError(
                f"the copy of the database from before the interrupted `stcg load` of {rec.get('folder')} is missing "
                f"({store}): it cannot be undone"
            )
        n = _put_back(server, log, timeout)
        _record_path(server).unlink(missing_ok=True)
    log(
        f"undid the interrupted load of {rec.get('folder')}: database {DATABASE} on {server.bolt_uri} is as it was "
        f"before it ({n} nodes), online"
    )
    return n


__all__ = [
    "CsvSink",
    "CsvFolder",
    "prepare_import",
    "load_csv",
    "finish_load",
    "undo_load",
    "load_lock",
    "read_load_record",
    "database_counts",
    "read_buffer_size",
    "load_command",
]
