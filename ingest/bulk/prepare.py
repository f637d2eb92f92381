"""``prepare_import``: check everything in a ``--sink csv:DIR`` folder (names, headers, manifests, runs) and
write the ``neo4j-admin database import`` arguments (``import.args``)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from ingest.bulk.csv_format import (
    DATA_NAME,
    FILE_INFO,
    KEY_NAME,
    MIB,
    PART_LABELS,
    PART_NAME,
    READ_BUFFER,
    RUN_DIR_NAME,
    SCALAR_TYPES,
    STATUSES,
    CsvFolder,
    HeaderGroup,
    read_buffer_size,
    read_text,
    run_key,
    run_node_csv,
    write_new,
    write_text,
)
from ingest.rows import REL_TYPES
from stcg.errors import StcgError
from stcg.filestore import mkdir_private


def _parse_header(text: str, group: str, node: bool) -> HeaderGroup | None:
    """The ``HeaderGroup`` whose header CsvSink writes as exactly ``text``, or None."""
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
    g = HeaderGroup(group, tuple(cols), node)
    return g if g.header() == text else None


def _load_json(folder: CsvFolder, path: Path):
    try:
        return json.loads(read_text(path))
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
                    g = _parse_header(read_text(hpath), group, node)
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
        if not isinstance(props, dict) or not isinstance(props.get("uid"), str) or run_key(props["uid"]) != d.name:
            raise refuse(d / "run.json", f"does not hold the Run whose uid hashes to {d.name}")
        try:
            want, multiline = run_node_csv(props)
        except StcgError as e:
            raise refuse(d / "run.json", f"holds a property CSV import cannot hold ({e})") from None
        try:
            same = read_text(d / "Run.csv") == want
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
                write_new(path, "".join(keep).encode("utf-8"))
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
    write_text(args, "\n".join(lines) + "\n")
    plan = {
        "args": str(args),
        "nodes": dict(sorted(nodes.items())),
        "relationships": dict(sorted(rels.items())),
        "runs": sorted(known),
        "dropped": dropped,
        "read_buffer": buffer,
    }
    write_text(f.root / "import.counts.json", json.dumps(plan, indent=1))
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
