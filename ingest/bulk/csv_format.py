"""The import-file format of ``--sink csv:DIR`` (docs/bulk.md): typed CSV fields and header signatures,
the folder's layout and safe file writes (``CsvFolder``), shared by the sink that writes it and the loader."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import stat
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest.rows import REL_TYPES
from ingest.schema import GRAPH_LABELS
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


def now_iso() -> str:
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


class HeaderGroup:
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


def encode_rows(rows: list[dict], node: bool, group: str, failed: bool, into: dict) -> None:
    """Encode ``rows`` into ``into[(group name, failed)] = [HeaderGroup, lines, multiline]``."""
    skip = ("uid",) if node else ("a", "b")
    for row in rows:
        cols = _signature(row, skip)
        g = HeaderGroup(group, cols, node)
        slot = into.get((g.name, failed))
        if slot is None:
            slot = into[(g.name, failed)] = [g, [], False]
        ids = [_quote(row["uid"])] if node else [_quote(row["a"]), _quote(row["b"])]
        line = ",".join(ids + [_field(t, k, row[k]) for k, t in cols])
        if "\n" in line or "\r" in line:
            slot[2] = True
        slot[1].append(line)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` owner-only, never through a link nor over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically and owner-only (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write_new(tmp, text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_text(path: Path) -> str:
    """The text of ``path``, never through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, encoding="utf-8", newline="") as fh:
        return fh.read()


def longest_record(lines: list[str]) -> int:
    """The size in bytes of the longest of ``lines`` (UTF-8)."""
    return max((len(ln) if ln.isascii() else len(ln.encode("utf-8")) for ln in lines), default=0)


def read_buffer_size(max_record: int) -> int:
    """neo4j-admin's ``--read-buffer-size`` for records of up to ``max_record`` bytes: its default 4 MiB,
    or twice the longest record rounded up to whole MiB."""
    return max(READ_BUFFER, -(-2 * max_record // MIB) * MIB)


def run_key(run_id: str) -> str:
    return hashlib.sha1(run_id.encode()).hexdigest()[:16]


def run_node_csv(props: dict) -> tuple[str, bool]:
    """The text of ``Run.csv`` for the Run properties ``props`` (header and row), and whether it spans lines."""
    rows: dict = {}
    encode_rows([props], True, "Run", False, rows)
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
        return self.root / "runs" / run_key(run_id)

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
            write_new(probe, b"")
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
            out.append((d, json.loads(read_text(d / "manifest.json"))))
        return out

    def runs(self) -> list[dict]:
        """The Run nodes' properties, one dict per run."""
        root = self.root / "runs"
        if not root.is_dir():
            return []
        return [json.loads(read_text(p)) for p in sorted(root.glob("*/run.json"))]

    def read_run(self, run_id: str) -> dict | None:
        p = self.run_dir(run_id) / "run.json"
        return json.loads(read_text(p)) if p.is_file() else None

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
        text, _ = run_node_csv(props)
        write_text(d / "run.json", json.dumps(props, sort_keys=True, indent=1))
        write_text(d / "Run.csv", text)

    def read_leases(self, run_id: str) -> dict[str, dict]:
        """``runs/<hash>/writers.json``: lease uid -> ``{uid, host, pid, shard, heartbeat}`` (epoch seconds)."""
        try:
            data = json.loads(read_text(self.run_dir(run_id) / "writers.json"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_leases(self, run_id: str, leases: dict[str, dict]) -> None:
        write_text(self.run_dir(run_id) / "writers.json", json.dumps(leases, sort_keys=True, indent=1))
