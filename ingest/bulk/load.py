"""``stcg load DIR``: import a ``--sink csv:DIR`` folder into the local server (the store moved aside and put
back on failure), and ``finish_load`` / ``undo_load`` for an interrupted one."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ingest.bulk.csv_format import DATABASE, CsvFolder, now_iso
from ingest.bulk.prepare import prepare_import
from ingest.bulk.server import (
    STEPS,
    admin_alive,
    admin_import_command,
    bolt_driver,
    clean_load,
    database_counts,
    describe_error,
    die_with_parent,
    interrupted_error,
    load_command,
    load_lock,
    put_back,
    read_load_record,
    record_path,
    store_dirs,
    wait_online,
    write_record,
    write_stats,
)
from ingest.statements import statement
from stcg.errors import StcgError


def _complete_load(server, plan: dict, log, timeout: float) -> dict:
    """After a successful import: start the server, create the schema, compare the counts with ``plan``
    (Stats nodes of an earlier try left out), write the statistics of every complete run."""
    from ingest.schema import ensure_schema

    server.start(timeout=timeout, log=log)
    wait_online(server, min(timeout, 60.0))
    n_nodes, n_rels = sum(plan["nodes"].values()), sum(plan["relationships"].values())
    with bolt_driver(server) as driver:
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
    stats_seconds, stats_nodes = write_stats(server, plan["runs"], log)
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
        preexec_fn=die_with_parent(),
    )
    try:
        write_record(server, rec, step="importing", admin_pid=proc.pid)
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
    write_record(server, rec, step="imported", admin_pid=None)
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
            raise interrupted_error(server, rec)
        plan = prepare_import(folder, log=log)
        root = CsvFolder(folder).root
        server.start(timeout=timeout, log=log)
        with bolt_driver(server) as driver:
            with driver.session(database=DATABASE) as s:
                n = s.run(statement("count_nodes")).single()["c"]
        if n:
            raise StcgError(
                f"database {DATABASE} is not empty ({n} nodes); neo4j-admin import needs an empty database in "
                "Community edition — write into it with `stcg ingest` (Bolt) instead"
            )
        java = server.java()
        for _, aside in store_dirs(server):
            if aside.exists() or aside.is_symlink():
                raise StcgError(f"{aside} is left from an earlier `stcg load`; move it away and run this again")
        rec = {
            "folder": str(root),
            "home": str(server.home),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": now_iso(),
            "admin_pid": None,
            "plan": plan,
        }
        write_record(server, rec, step="stopping")
        try:
            server.stop(log=log)
            for cur, aside in store_dirs(server):
                if cur.exists():
                    os.rename(cur, aside)
            import_seconds, done = _import(server, rec, java, max_memory, log)
            checked = _complete_load(server, plan, log, timeout)
        except BaseException as e:
            if not isinstance(e, Exception | KeyboardInterrupt):
                raise  # SystemExit and the like: the record tells the next `stcg load` what to do
            _roll_back(server, rec, e, log, timeout)
            raise
        clean_load(server, rec)
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
    why = describe_error(e)
    try:
        n = put_back(server, log, timeout)
        record_path(server).unlink(missing_ok=True)
    except Exception as e2:
        raise StcgError(
            f"{why}; putting the database back as it was failed too ({describe_error(e2)}): run "
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
    if admin_alive(rec):
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
            clean_load(server, rec)
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
                f"{describe_error(e)}; the load is not finished: {load_command(server, '--undo')} puts the database "
                "back as it was before it"
            ) from None
        clean_load(server, rec)
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
        store = store_dirs(server)[0][1]  # the store itself (its transaction logs may have had none)
        if step in ("importing", "imported") and not store.is_dir():
            raise StcgError(
                f"the copy of the database from before the interrupted `stcg load` of {rec.get('folder')} is missing "
                f"({store}): it cannot be undone"
            )
        n = put_back(server, log, timeout)
        record_path(server).unlink(missing_ok=True)
    log(
        f"undid the interrupted load of {rec.get('folder')}: database {DATABASE} on {server.bolt_uri} is as it was "
        f"before it ({n} nodes), online"
    )
    return n
