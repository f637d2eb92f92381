"""The dense-array file store of a run: every record's arrays, losslessly, in sharded safetensors files.

Layout::

    <root>/<run_id>/run.json                     the run's parameters
    <root>/<run_id>/shards/part-*.safetensors    one file per written batch of records
    <root>/<run_id>/failures.jsonl               one line per failed example (id, reason)

Inside a shard, record ``k``'s arrays are the tensors ``"<k>/<name>"``; the header metadata holds
each record's non-array fields as JSON. The store knows nothing of what a record means: the
engine's ``STCGraph`` is written as ``(example_id, meta, arrays)`` and read back with
``STCGraph.from_parts(*store.read(shard, key))``. ``Example.store_shard`` / ``Example.store_key``
in Neo4j point here and ``Run.store`` records the root, so readers find a run's arrays without
being told where they are.

``FileStore.create`` makes a run's folders (owner-only: 0700 folders, 0600 files) and refuses, in one line,
a run folder, ``shards/`` folder or store file that is a symbolic link, is not ours, or is writable by group
or others: on a shared ``--store`` another local user could otherwise pre-make a run's folder (run ids
are predictable) and make ingestion write into their files. Store files are created without following
links (``O_NOFOLLOW``), so one planted later is refused too;
``FileStore.open`` finds an existing one and fails with one line when it is missing. Shards are
written to a temporary name and renamed, so a crash never leaves a half-written shard. Several processes
(the Ray workers of one run) may write one run's store at once: shard names are random, ``run.json`` is
replaced by a rename and each ``failures.jsonl`` line is one append.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from stcg.errors import StcgError

Record = tuple[str, dict, Mapping[str, np.ndarray]]
"""``(record id, JSON-able metadata, arrays by name)``: what one shard entry holds."""

DIR_MODE = 0o700
FILE_MODE = 0o600


def check_run_folder_name(run_id: str) -> str:
    """``run_id`` if it is usable as one folder name (no separators, no ``.``/``..``, no NUL)."""
    if not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id or "\0" in run_id:
        raise StcgError(f"run id {run_id!r} cannot be a folder name (no '/', '\\\\', '.', '..' or empty)")
    if len(run_id.encode()) > 255:
        raise StcgError(f"run id is {len(run_id.encode())} bytes long; a folder name may have at most 255")
    return run_id


def mkdir_private(path: Path) -> None:
    """Create ``path`` and its missing parents; the folders this call creates are owner-only (0700).
    An existing link on the way is not followed into (making a folder under it fails). Raises OSError."""
    missing = []
    p = path
    while not p.exists() and not p.is_symlink() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)


STORE_FILES = ("failures.jsonl", "run.json")  # the files a writer opens by a fixed name


def _unsafe(st: os.stat_result, kind: str) -> str | None:
    """Why a store path of this ``lstat`` must not be written through, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refuse(path: Path, why: str) -> StcgError:
    return StcgError(
        f"refusing to write the file store through {path}: it {why}; another user could redirect what "
        "ingestion writes. Remove it (or choose another --store)"
    )


def check_private(path: Path, kind: str) -> None:
    """One-line ``StcgError`` unless ``path`` (absent, or a ``kind`` = dir|file) is safe to write through."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # absent (a file above it: making it says so)
        return
    except OSError as e:
        raise StcgError(
            f"cannot read the file store folder {path}: {e.strerror or e}; choose another --store"
        ) from None
    why = _unsafe(st, kind)
    if why:
        raise _refuse(path, why)


class FileStore:
    """The arrays of one run under ``<root>/<run_id>``. Use ``create`` (writers) or ``open`` (readers).

    ``root``: the store's root folder (any path; kept absolute, ``~`` expanded); ``run_id``: the
    run's folder name (``check_run_folder_name``). Records are ``(id, meta, arrays)``: ``meta`` JSON-able,
    ``arrays`` numpy arrays of any shape and dtype safetensors stores (float32 for the STCG arrays).
    """

    def __init__(self, root: str | Path, run_id: str):
        self.root = Path(root).expanduser().resolve()
        self.run_id = check_run_folder_name(run_id)
        self.dir = self.root / run_id
        self.shards = self.dir / "shards"

    @classmethod
    def create(cls, root: str | Path, run_id: str) -> FileStore:
        """The store of ``run_id`` under ``root``, its folders made (owner-only) if missing."""
        store = cls(root, run_id)
        if store.root.exists() and not store.root.is_dir():
            raise StcgError(f"file store root {store.root} exists and is not a folder; choose another --store")
        check_private(store.dir, "dir")  # before anything is made inside it
        check_private(store.shards, "dir")
        try:
            mkdir_private(store.shards)
        except OSError as e:
            raise StcgError(
                f"cannot create the file store folder {store.shards}: {e.strerror or e}; choose another --store"
            ) from None
        for path, kind in ((store.dir, "dir"), (store.shards, "dir"), *((store.dir / n, "file") for n in STORE_FILES)):
            check_private(path, kind)
        return store

    @classmethod
    def open(cls, root: str | Path, run_id: str, option: str = "--store") -> FileStore:
        """The existing store of ``run_id`` under ``root``; one-line ``StcgError`` when it is not there."""
        store = cls(root, run_id)
        if not store.shards.is_dir():
            raise StcgError(
                f"file store of run {run_id} not found at {store.dir} (moved or deleted?); "
                f"pass {option} with the folder that holds {run_id}/"
            )
        return store

    def shard_path(self, shard: str) -> Path:
        if "/" in shard or shard.startswith("."):
            raise StcgError(f"bad shard name {shard!r} in the database")
        path = self.shards / shard
        if not path.is_file():
            raise StcgError(
                f"shard {shard} of run {self.run_id} is missing from {self.shards}; "
                "the store is incomplete (re-ingest the run, or pass --store with a complete copy)"
            )
        return path

    def write_shard(self, records: Sequence[Record]) -> dict[str, dict]:
        """Write one shard; returns ``{record id: {"shard": file name, "key": str}}``."""
        from safetensors import SafetensorError
        from safetensors.numpy import save_file

        name = f"part-{uuid.uuid4().hex[:16]}.safetensors"
        tensors, metas, refs = {}, {}, {}
        for k, (rid, meta, arrays) in enumerate(records):
            for arr_name, arr in arrays.items():
                tensors[f"{k}/{arr_name}"] = np.ascontiguousarray(arr)
            metas[str(k)] = meta
            refs[rid] = {"shard": name, "key": str(k)}
        tmp = self.shards / f".{name}.tmp"
        try:
            save_file(tensors, str(tmp), metadata={"records": json.dumps(metas)})
        except SafetensorError as e:  # an I/O error inside safetensors' Rust code: report it as one
            raise OSError(" ".join(str(e).split())) from None
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, self.shards / name)
        return refs

    @staticmethod
    def _metas(f) -> dict:
        md = f.metadata() or {}
        # "stcgraphs": the key of stores written before the store became generic
        return json.loads(md.get("records") or md["stcgraphs"])

    def read(self, shard: str, key: str) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)`` of record ``key`` in ``shard``."""
        from safetensors import safe_open

        with safe_open(str(self.shard_path(shard)), framework="numpy") as f:
            meta = self._metas(f)[key]
            prefix = f"{key}/"
            arrays = {n[len(prefix) :]: f.get_tensor(n) for n in f.keys() if n.startswith(prefix)}
        return meta, arrays

    def iter_shard(self, shard: str) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
        """``(meta, arrays)`` of every record of ``shard``, in written order."""
        from safetensors import safe_open

        with safe_open(str(self.shard_path(shard)), framework="numpy") as f:
            metas = self._metas(f)
            names = list(f.keys())
            for key, meta in metas.items():
                prefix = f"{key}/"
                yield meta, {n[len(prefix) :]: f.get_tensor(n) for n in names if n.startswith(prefix)}

    def _append_private(self, name: str, line: str) -> None:
        """Append ``line`` with ONE ``write`` on an ``O_APPEND`` descriptor, so lines of concurrent writers
        (Ray workers of one run, on one file system) never interleave or overwrite each other."""
        data = line.encode()
        path = self.dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _refuse(path, "is a symbolic link") from None
            raise
        try:
            why = _unsafe(os.fstat(fd), "file")
            if why:
                raise _refuse(path, why)
            written = os.write(fd, data)
            while written < len(data):  # a short write (full disk, signal): finish the line
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)

    def record_failure(self, example_id: str, reason: str, extra: dict | None = None) -> None:
        self._append_private(
            "failures.jsonl", json.dumps({"example_id": example_id, "reason": reason, **(extra or {})}) + "\n"
        )

    def write_run(self, info: dict) -> None:
        """``run.json``, written to a private temporary name and renamed: a reader (or another worker writing
        the same file) never sees it half-written."""
        path = self.dir / "run.json"
        check_private(path, "file")
        tmp = self.dir / f".run.json.{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(info, indent=1, default=str))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
