"""What ``stcg load`` does to the server home: counts, the neo4j-admin command, run statistics after an
import, and the load's lock and progress record (``<home>/run/stcg-load.*``) that make it finishable or
undoable."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ingest.bulk.csv_format import DATABASE, NODE_LABELS, now_iso, read_text, write_text
from ingest.rows import REL_TYPES
from ingest.statements import statement
from stcg.errors import StcgError
from stcg.filestore import FILE_MODE, mkdir_private


def bolt_driver(server):
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


def write_stats(server, runs, log) -> tuple[float, int]:
    """The statistics of every imported run that is complete (``ingest.stats``): seconds, Stats nodes."""
    from ingest.stats import write_run_stats
    from ingest.writer import Neo4jWriter

    t0 = time.perf_counter()
    with bolt_driver(server) as driver:
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


def store_dirs(server) -> list[tuple[Path, Path]]:
    """``[(store folder, its aside copy)]`` of the database: its store and its transaction logs."""
    data = server.home / "data"
    return [(data / sub / DATABASE, data / sub / f"{DATABASE}{ASIDE}") for sub in STORE_DIRS]


def record_path(server) -> Path:
    return server.home / "run" / LOAD_RECORD


def read_load_record(home: str | os.PathLike) -> dict | None:
    """The record of a ``stcg load`` in progress (or interrupted) in server home ``home``, or None."""
    path = Path(home) / "run" / LOAD_RECORD
    try:
        rec = json.loads(read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StcgError(
            f"the load record {path} cannot be read ({getattr(e, 'strerror', None) or e}); remove it"
        ) from None
    return rec if isinstance(rec, dict) else {}


def write_record(server, rec: dict, **changes) -> dict:
    rec.update(changes, updated=now_iso())
    write_text(record_path(server), json.dumps(rec, indent=1))
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


def interrupted_error(server, rec: dict) -> StcgError:
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


def admin_alive(rec: dict) -> bool:
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


def die_with_parent():
    """A ``preexec_fn`` that has neo4j-admin killed with its ``stcg load`` (Linux ``PR_SET_PDEATHSIG``), or
    None where there is no ``prctl``. Resolved in the parent: the child only calls it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def wait_online(server, timeout: float) -> int:
    """Nodes in the database once it answers (a database still starting is waited for); a neo4j error
    once ``timeout`` has passed."""
    from neo4j.exceptions import DatabaseUnavailable

    deadline = time.monotonic() + timeout
    with bolt_driver(server) as driver:
        while True:
            try:
                with driver.session(database=DATABASE) as s:
                    return s.run(statement("count_nodes")).single()["c"]
            except DatabaseUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def put_back(server, log, timeout: float) -> int:
    """Stop the server, put the database's aside folders back in place of what a load left, start it;
    returns the database's node count."""
    server.stop(log=log)
    for cur, aside in store_dirs(server):
        if aside.is_dir() and not aside.is_symlink():
            if cur.is_symlink() or cur.is_file():
                cur.unlink()
            elif cur.exists():
                shutil.rmtree(cur)
            os.rename(aside, cur)
    server.start(timeout=timeout, log=log)
    return wait_online(server, min(timeout, 60.0))


def clean_load(server, rec: dict) -> None:
    """The load is done: drop the database's aside folders, then the record."""
    write_record(server, rec, step="cleaning")
    for _, aside in store_dirs(server):
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
    record_path(server).unlink(missing_ok=True)


def describe_error(e: BaseException) -> str:
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
