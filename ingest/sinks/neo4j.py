"""``--sink neo4j`` (the default): a run written into Neo4j over Bolt, with its bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ingest.lease import LEASE_BEAT, LEASE_DROP, Lease
from ingest.runs import DONE, RUN_PARAMS, check_run, claim_run, finish_run
from ingest.sinks.registry import SinkKind, register_sink
from stcg.config import Neo4jSettings
from stcg.errors import StcgError


class Neo4jSink:
    """Where a run goes by default: Neo4j over Bolt (``Neo4jWriter``), with the Run bookkeeping.

    It implements ``ingest.sinks.registry.Sink``, the methods the pipeline talks to its sink through.
    """

    def __init__(self, driver, database: str | None = None, log: Callable[[str], None] | None = None):
        from ingest.writer import Neo4jWriter

        self.driver, self.database = driver, database
        self.writer = Neo4jWriter(driver, database, log=log)
        self._lease: Lease | None = None

    def prepare(self) -> None:
        from ingest.schema import ensure_schema

        ensure_schema(self.driver, self.database)

    def check_run(self, run_id: str, identity: str) -> None:
        check_run(self.writer, run_id, identity)

    def claim_run(self, run_id: str, identity: str, store_root: str, props: dict, lease: Lease | None = None) -> str:
        self._lease = lease
        return claim_run(self.writer, run_id, identity, store_root, props, lease)

    def heartbeat(self, run_id: str, lease_uid: str) -> None:
        if self._lease is None or self._lease.uid != lease_uid:
            raise StcgError(f"no lease {lease_uid} taken by this sink")
        self.writer.run_query(LEASE_BEAT, run_id=run_id, **self._lease.as_dict())

    def release(self, run_id: str, lease_uid: str) -> None:
        self.writer.run_query(LEASE_DROP, uids=[lease_uid])

    def completed(self, run_id: str) -> set[str]:
        return {r["id"] for r in self.writer.run_query(DONE, run_id=run_id)}

    def set_params(self, run_id: str, params: str) -> None:
        self.writer.run_query(RUN_PARAMS, run_id=run_id, params=params)

    def write(self, rows) -> None:
        self.writer.write(rows)

    def finish(self, run_id: str, finished: bool, lease_uid: str | None = None) -> dict:
        return finish_run(self.writer, run_id, finished, lease_uid=lease_uid)

    @property
    def nodes_written(self) -> int:
        return self.writer.nodes_written

    @property
    def rels_written(self) -> int:
        return self.writer.rels_written

    @property
    def retries(self) -> int:
        return self.writer.retries


@contextmanager
def open_neo4j(arg: str, settings: Neo4jSettings | None, log: Callable[[str], None]) -> Iterator[Neo4jSink]:
    """A ``Neo4jSink`` on a new driver for ``settings`` (``NEO4J_*`` when None), closed afterwards."""
    from stcg.db import connect

    settings = settings or Neo4jSettings.from_env()
    driver = connect(settings)
    try:
        yield Neo4jSink(driver, settings.database, log)
    finally:
        driver.close()


register_sink(SinkKind("neo4j", "neo4j", "Neo4j over Bolt, the default", open_neo4j, takes_arg=False, database=True))
