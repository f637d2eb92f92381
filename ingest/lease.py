"""Writer leases: which commands are writing into a run right now.

Every command that writes into a run (``stcg ingest``, a ``--shard`` worker, a Ray driver) holds a lease
on it from its claim to its finish: ``{uid, host, pid, shard}`` plus a heartbeat the command refreshes
every ``HEARTBEAT_S`` seconds. A sink stores the leases next to the run (Neo4j: ``Writer`` nodes; the CSV
folder: ``runs/<hash>/writers.json``) and uses them for two rules:

- a run with a live lease of another command is never finalised, and its statistics are never written
  (they would miss what that command writes next);
- a command is refused in one line while another live command writes the same examples
  (``overlaps``: two unsharded commands, or shards of one split that share examples).

A lease is live while its heartbeat is younger than ``LEASE_S``; on this host, also only while its
process is alive, so a killed command's lease ends at once.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ingest.statements import statement
from stcg.errors import StcgError

HEARTBEAT_S = 10.0  # seconds between heartbeats of a live command
LEASE_S = 60.0  # a lease whose heartbeat is older than this is dead (a hung or vanished command)


@dataclass(frozen=True)
class Lease:
    """One command's hold on a run: ``uid`` (random), ``host`` and ``pid`` of the command, ``shard``
    (``"i/N"`` or None for the whole selection)."""

    uid: str
    host: str
    pid: int
    shard: str | None = None

    @classmethod
    def new(cls, shard: str | None = None) -> Lease:
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid(), shard)

    def as_dict(self) -> dict:
        return asdict(self)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def is_live(host: str, pid: int, age_s: float) -> bool:
    """Whether a lease of ``host``/``pid`` whose heartbeat is ``age_s`` seconds old still holds."""
    if age_s is None or age_s > LEASE_S:
        return False
    if host == socket.gethostname():
        return _pid_alive(int(pid))
    return True


def _parse(shard: str | None) -> tuple[int, int] | None:
    if not shard:
        return None
    i, n = (int(x) for x in shard.split("/"))
    return i, n


def overlaps(a: str | None, b: str | None) -> bool:
    """Whether shards ``a`` and ``b`` (``"i/N"`` or None: everything) can hold the same example: they do
    unless both are shards of the same N with different i (``select`` takes every N-th example from i)."""
    pa, pb = _parse(a), _parse(b)
    if pa is None or pb is None:
        return True
    if pa[1] == pb[1]:
        return pa[0] == pb[0]
    return True


def busy_error(run_id: str, other: dict, age_s: float) -> StcgError:
    """The one line refusing a command while ``other`` (a live lease's dict) writes the same examples."""
    what = f"shard {other['shard']}" if other.get("shard") else "all its examples"
    return StcgError(
        f"run {run_id!r} is being written by another command ({what}; pid {other['pid']} on {other['host']}, "
        f"heartbeat {age_s:.0f} s ago); two commands would explain the same examples twice: wait for it to end "
        "(then run this again to pick up what is left), or give each command its own --shard i/N"
    )


def held_error(run_id: str, other: dict, age_s: float) -> StcgError:
    """The one line refusing ``--finalize`` while ``other`` writes into the run."""
    what = f" (shard {other['shard']})" if other.get("shard") else ""
    return StcgError(
        f"run {run_id!r} is being written by another command{what}: pid {other['pid']} on {other['host']}, "
        f"heartbeat {age_s:.0f} s ago; it finalises the run itself when it ends. If it was killed, its "
        f"lease ends when its process is gone (on another host: {LEASE_S:.0f} s after its last heartbeat); "
        "run --finalize again then",
        exit_code=1,
    )


@dataclass
class Heartbeat:
    """A daemon thread calling ``beat()`` every ``every`` seconds until ``stop()``; a failing beat is
    retried at the next tick (the lease only lapses if beats keep failing for ``LEASE_S``)."""

    beat: Callable[[], None]
    every: float = HEARTBEAT_S
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> Heartbeat:
        def loop():
            while not self._stop.wait(self.every):
                try:
                    self.beat()
                except Exception:  # the database is briefly away: the next tick tries again
                    pass

        self._thread = threading.Thread(target=loop, name="stcg-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# Writer leases (``ingest.lease``) as ``Writer`` nodes of the Run; ``age``: seconds since the heartbeat,
# by the server's clock (every command's heartbeat is the server's time too).
LEASES = statement("leases")
LEASE_TAKE = statement("lease_take")
LEASE_BEAT = statement("lease_beat")
LEASE_DROP = statement("lease_drop")


def live_leases(tx, run_id: str, own: str | None = None) -> list[tuple[dict, float]]:
    """The live leases of ``run_id`` other than ``own`` as ``(lease dict, heartbeat age in s)``, deleting
    the dead ones (a killed command's). Run inside a transaction that holds the Run's write lock."""
    live, dead = [], []
    for row in tx.run(LEASES, run_id=run_id):
        if row["uid"] == own:
            continue
        (live if is_live(row["host"], row["pid"], row["age"]) else dead).append((row.data(), row["age"]))
    if dead:
        tx.run(LEASE_DROP, uids=[d["uid"] for d, _ in dead]).consume()
    return live


__all__ = [
    "HEARTBEAT_S",
    "LEASE_S",
    "Lease",
    "Heartbeat",
    "is_live",
    "overlaps",
    "busy_error",
    "held_error",
    "live_leases",
]
