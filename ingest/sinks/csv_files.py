"""``--sink csv:<folder>``: ``CsvSink`` writes neo4j-admin import files, loaded by ``stcg load``
(docs/bulk.md); no database is touched while the run is written. The file format is
``ingest.bulk.csv_format``; the loader is ``ingest.bulk``."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ingest.bulk.csv_format import CsvFolder, encode_rows, longest_record, now_iso, write_new, write_text
from ingest.lease import Lease, busy_error, is_live, overlaps
from ingest.rows import GraphRows, flat_rows
from ingest.sinks.registry import SinkKind, register_sink
from stcg.errors import StcgError
from stcg.filestore import DIR_MODE


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
    """``--sink csv:DIR``: the pipeline's sink (see ``ingest.sinks.neo4j.Neo4jSink``) writing import files.

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
            now = now_iso()
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
                run.update(status="running", updated_at=now_iso())
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
            run.update(params=params, updated_at=now_iso())
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
            now = now_iso()
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
        now = now_iso()
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
            encode_rows(ok, True, label, False, encoded)
            encode_rows(bad, True, label, True, encoded)
        for group, data in flat.rels.items():
            if group == "HAS_EXAMPLE":
                encode_rows([r for r in data if r["b"] not in failed_uids], False, group, False, encoded)
                encode_rows([r for r in data if r["b"] in failed_uids], False, group, True, encoded)
            else:
                encode_rows(data, False, group, False, encoded)
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
                    write_text(header, g.header())
            self._seq += 1
            name = f"{time.time_ns():020d}-{self.worker}-{self._seq:06d}"
            tmp = self.folder.parts / f".tmp-{name}"
            tmp.mkdir(mode=DIR_MODE)
            files, longest = {}, 0
            for (gname, failed), (g, lines, multiline) in encoded.items():
                fname = f"{gname}{'.failed' if failed else ''}.csv"
                write_new(tmp / fname, ("\n".join(lines) + "\n").encode("utf-8"))
                longest = max(longest, longest_record(lines))
                files[fname] = {
                    "group": g.group,
                    "node": g.node,
                    "header": f"{gname}.csv",
                    "rows": len(lines),
                    "failed": failed,
                    "multiline": multiline,
                }
            manifest = {"examples": examples, "files": files, "max_record_bytes": longest}
            write_new(tmp / "manifest.json", json.dumps(manifest).encode("utf-8"))
            os.replace(tmp, self.folder.parts / name)
        except OSError as e:
            raise StcgError(f"cannot write import files in {self.folder.root}: {e.strerror or e}") from None


@contextmanager
def open_csv(arg: str, settings, log: Callable[[str], None]) -> Iterator[CsvSink]:
    yield CsvSink(arg, log=log)


register_sink(
    SinkKind(
        "csv",
        "csv:<folder>",
        "neo4j-admin import files, loaded with `stcg load`",
        open_csv,
        takes_arg=True,
        database=False,
    )
)
