"""Run bookkeeping in Neo4j: a run's name and identity, its ONE atomic claim, and its finish.

A run id is ``--run-name`` as given (``check_run_name``) or ``run-<identity_hash>``; two names that fold
to the same ``run_name_key`` are one run. ``claim_run`` creates or resumes a Run in one write
transaction that checks its name and identity; ``finish_run`` counts its examples and sets its status
under the Run's write lock, so concurrent shard workers finalise a run exactly once; ``finalize_run``
is ``stcg ingest --finalize``. Every statement is a file in ``ingest/cypher/``.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata

from ingest.lease import LEASE_DROP, LEASE_TAKE, Lease, busy_error, held_error, live_leases, overlaps
from ingest.statements import statement
from ingest.stats import DROP_STATS, write_run_stats
from stcg.config import Neo4jSettings
from stcg.errors import StcgError


def identity_hash(identity: dict) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


# control characters, lone surrogates, line/paragraph separators, and format characters (Cf: invisible ones
# such as U+200B zero width space, U+FEFF, U+202E right-to-left override, which would make two runs look alike)
_BAD_NAME_CATEGORIES = {"Cc", "Cs", "Zl", "Zp", "Cf"}


def check_run_name(name: str) -> str:
    """``name`` if it can be a run id as given: one folder name (``check_run_folder_name``), no control
    characters, no leading or trailing white space; else a one-line ``StcgError``."""
    from stcg.filestore import check_run_folder_name

    if not isinstance(name, str) or not name:
        raise StcgError("--run-name is empty; give a name, or leave it out to derive one from the arguments")
    bad = next((c for c in name if unicodedata.category(c) in _BAD_NAME_CATEGORIES), None)
    if bad is not None:
        kind = "invisible format" if unicodedata.category(bad) == "Cf" else "control"
        what = unicodedata.name(bad, "")
        raise StcgError(
            f"--run-name {name!r} contains the {kind} character U+{ord(bad):04X}{f' ({what})' if what else ''}; "
            "use printable characters"
        )
    if name != name.strip():
        raise StcgError(f"--run-name {name!r} starts or ends with white space; remove it")
    try:
        check_run_folder_name(name)
    except StcgError as e:
        raise StcgError(f"--run-name {name!r} cannot be used: {e}") from None
    return name


def run_name_key(name: str) -> str:
    """What two names must not share: equal after Unicode NFC and case folding means the same folder on
    a case-insensitive or normalising file system (macOS, Windows), and the same run to a reader."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


# Run bookkeeping: fixed statements, every value a parameter.
RUN_CLASH = statement("run_clash")

RUN_CLAIM = statement("run_claim")

RUN_START = statement("run_start")

RUN_PARAMS = statement("run_params")

# ``finished``: the whole selection was worked through by an unsharded command. ``live``: how many OTHER
# commands hold a live lease on the run (``ingest.lease``): while one does, the run stays 'running' and
# is never finalised, whatever the counts say (it is still writing; its own finish decides). Then a run with no
# complete example is 'failed' (never a default for the templates). A shard worker (``finished`` false)
# leaves 'partial' until every example of the whole selection (``Run.n_total``, all shards) is complete
# or failed: then the run is finalised ('complete', or 'failed' with no complete example), whichever
# worker (or ``stcg ingest --finalize``) gets there. Run with ``RUN_LOCK`` first, in one transaction:
# finishing workers of one run then take turns, so the last one sees every other's examples, and only
# the first to see them all finalises (``finalised``); a later one changes nothing but the counts.
RUN_LOCK = statement("run_lock")
RUN_FINISH = statement("run_finish")

# A Run made without the pipeline's checks (tests and benchmarks that write synthetic STCGs).
RUN_MERGE = statement("run_merge")

DONE = statement("examples_done")


def clash_error(run_id: str, other: str) -> StcgError:
    return StcgError(
        f"run name {run_id!r} collides with the existing run {other!r} (equal up to case or Unicode "
        "normalisation, so they would share one store folder); choose another --run-name"
    )


def identity_error(run_id: str) -> StcgError:
    return StcgError(
        f"run {run_id!r} already holds results of another model or other parameters; "
        "choose another --run-name (resuming it would mix the two)"
    )


def check_run(writer, run_id: str, identity: str) -> None:
    """Read-only early refusal (before the store folder is made) of a colliding name or another
    identity; ``claim_run`` repeats both checks atomically, so this only saves work in the common case."""

    def work(tx):
        other = tx.run(RUN_CLASH, run_id=run_id, key=run_name_key(run_id)).single()
        if other is not None:
            raise clash_error(run_id, other["uid"])
        held = tx.run(statement("run_identity"), run_id=run_id).single()
        if held is not None and held["identity"] not in (None, identity):
            raise identity_error(run_id)

    writer.transaction("the run's identity", work, write=False)


def claim_run(writer, run_id: str, identity: str, store_root: str, props: dict, lease: Lease | None = None) -> str:
    """Check the run name, the run's identity and create (or resume) the Run, as ONE write transaction.

    The Run is MERGEd on its uid (uniqueness constraint) with its identity set on creation, so of two
    commands that start the same run name at once exactly one creates it; the other then sees the
    stored identity and, when it differs, is refused before anything of it reaches Neo4j. A name equal
    to another run's up to case and Unicode normalisation is refused (``Run.name_key`` is unique too).
    With ``lease`` (``ingest.lease``), the command's lease is taken in the same transaction, under the
    Run's write lock: a live lease of another command that writes the same examples refuses this one.
    Returns the store root recorded on the Run (this one unless the run already holds examples elsewhere).
    """
    from neo4j.exceptions import ConstraintError

    key = run_name_key(run_id)

    def work(tx):
        other = tx.run(RUN_CLASH, run_id=run_id, key=key).single()
        if other is not None:
            raise clash_error(run_id, other["uid"])
        held = tx.run(RUN_CLAIM, run_id=run_id, key=key, identity=identity, store=store_root).single()["identity"]
        if held not in (None, identity):
            raise identity_error(run_id)
        store = tx.run(RUN_START, run_id=run_id, props=props, identity=identity, store=store_root).single()["store"]
        if lease is not None:  # RUN_START took the Run's write lock: leases are read after any other claim
            for other, age in live_leases(tx, run_id):
                if overlaps(other["shard"], lease.shard):
                    raise busy_error(run_id, other, age)
            tx.run(LEASE_TAKE, run_id=run_id, **lease.as_dict()).consume()
        tx.run(DROP_STATS, run_id=run_id).consume()  # rewritten when the run is complete again (finish_run)
        return store

    try:
        return writer.transaction("the run's identity", work)
    except ConstraintError:
        # another command created a run of the same name key between our check and our MERGE: name it,
        # or (the same uid, created concurrently) MERGE onto it now
        check_run(writer, run_id, identity)
        return writer.transaction("the run's identity", work)


def finish_run(
    writer,
    run_id: str,
    finished: bool,
    rewrite_stats: bool = False,
    lease_uid: str | None = None,
    refuse_if_held: bool = False,
) -> dict:
    """Counts and status of a run after a command worked on it (``RUN_FINISH``), in one transaction
    that first takes the Run's write lock, so concurrent shard workers finalise a run exactly once.
    The command's lease ``lease_uid`` ends in the same transaction; while another command holds a live
    lease the run stays 'running' (or, with ``refuse_if_held``, as ``--finalize`` asks, a one-line
    ``StcgError`` says who holds it). A run that is ``complete`` then gets its statistics
    (``ingest.stats.write_run_stats``, under the same lock and the same lease rule; skipped when they are
    current unless ``rewrite_stats``), returned as ``stats``."""

    def work(tx):
        if tx.run(RUN_LOCK, run_id=run_id).single() is None:
            raise StcgError(f"no run {run_id!r} in this database")
        if lease_uid is not None:
            tx.run(LEASE_DROP, uids=[lease_uid]).consume()
        live = live_leases(tx, run_id, own=lease_uid)
        if live and refuse_if_held:
            raise held_error(run_id, *live[0])
        return tx.run(RUN_FINISH, run_id=run_id, finished=finished, live=len(live)).single().data()

    end = writer.transaction("the run's status", work)
    if end["status"] == "complete":
        end["stats"] = write_run_stats(writer, run_id, force=rewrite_stats)
    return end


def finalize_run(run_name: str, settings: Neo4jSettings | None = None) -> dict:
    """``stcg ingest --finalize``: make a sharded run ``complete`` when every example of its whole
    selection is complete or failed (the last shard worker does this by itself); else it stays
    ``partial``. A complete run's statistics are rewritten. A run that another command is writing into
    (a live lease) is not touched: one-line ``StcgError`` (exit code 1) naming it. Returns
    ``finish_run``'s dict; an unknown run is a one-line ``StcgError``."""
    from ingest.writer import Neo4jWriter
    from stcg.db import connect

    settings = settings or Neo4jSettings.from_env()
    with connect(settings) as driver:
        writer = Neo4jWriter(driver, settings.database)
        found = writer.run_query(statement("run_by_name"), n=run_name)
        if not found:
            raise StcgError(f"no run named {run_name!r} in this database (list them: stcg query run runs)")
        return {
            "run_id": found[0]["uid"],
            **finish_run(writer, found[0]["uid"], finished=False, rewrite_stats=True, refuse_if_held=True),
        }
