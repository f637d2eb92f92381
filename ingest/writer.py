"""Neo4j writer: UNWIND-batched, parameterised statements, completion marker last, retries.

An example's whole subgraph is written by ONE statement per chunk of examples
(``EXAMPLE_STATEMENT``): the Example is MERGEd on its uid, any earlier content of it (from an
interrupted run) is removed, its nodes are created and bound to lists, and every link is created
from index tables into those lists, so no link needs a uid lookup or a MERGE scan. Keys stay
stable and a rerun replaces rather than duplicates: MERGE semantics at example granularity.

Statements are fixed text or generated from the fixed schema tables in ``ingest.rows`` (labels,
types and property names are ours, never user text); every value travels as a query parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from neo4j import Driver
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError

from ingest.rows import REL_TYPES, GraphRows
from stcg.errors import StcgError

RETRYABLE = (ServiceUnavailable, SessionExpired, TransientError, ConnectionError, OSError)


def node_statement(label: str) -> str:
    return f"UNWIND $rows AS row MERGE (n:{label} {{uid: row.uid}}) SET n += row"


def rel_statement(group: str) -> str:
    start, rtype, end, key = REL_TYPES[group]
    keypart = f" {{{key}: row.{key}}}" if key else ""
    return (
        f"UNWIND $rows AS row MATCH (a:{start} {{uid: row.a}}) MATCH (b:{end} {{uid: row.b}}) "
        f"MERGE (a)-[r:{rtype}{keypart}]->(b) SET r += row.props"
    )


def _children(var: str, key: str, label: str, rel: str) -> str:
    return (
        f"CALL (e, ex) {{ UNWIND ex.{key} AS props CREATE (n:{label}) SET n = props "
        f"CREATE (e)-[:{rel}]->(n) RETURN collect(n) AS {var} }}\n"
    )


EXAMPLE_STATEMENT = (
    "UNWIND $examples AS ex\n"
    "MERGE (run:Run {uid: ex.run_id}) ON CREATE SET run.run_id = ex.run_id\n"
    "MERGE (e:Example {uid: ex.example.uid})\n"
    "SET e += ex.example\n"
    "MERGE (run)-[:HAS_EXAMPLE]->(e)\n"
    "WITH e, ex\n"
    # a rerun of an example an interrupted run left incomplete replaces what is there
    "CALL (e) { MATCH (e)-[:HAS_TOKEN|HAS_REGION|HAS_STEP|HAS_PERTURBATION]->(old) DETACH DELETE old }\n"
    + _children("regions", "regions", "Region", "HAS_REGION")
    + _children("tokens", "tokens", "Token", "HAS_TOKEN")
    + _children("steps", "steps", "Timestep", "HAS_STEP")
    + _children("perts", "perturbations", "Perturbation", "HAS_PERTURBATION")
    + "CALL (ex, tokens, regions) { UNWIND ex.attends AS x WITH tokens[x[0]] AS a, regions[x[1]] AS b, x "
    "CREATE (a)-[:ATTENDS {weight: x[2], rank: x[3]}]->(b) }\n"
    "CALL (ex, steps, regions) { UNWIND ex.step_attends AS x WITH steps[x[0]] AS a, regions[x[1]] AS b, x "
    "CREATE (a)-[:ATTENDS {weight: x[2], rank: x[3]}]->(b) }\n"
    "CALL (ex, steps, tokens) { UNWIND ex.attends_token AS x WITH steps[x[0]] AS a, tokens[x[1]] AS b, x "
    "CREATE (a)-[:ATTENDS_TOKEN {weight: x[2]}]->(b) }\n"
    "CALL (ex, steps) { UNWIND ex.next AS x WITH steps[x[0]] AS a, steps[x[0] + 1] AS b, x "
    "CREATE (a)-[:NEXT {js: x[1]}]->(b) }\n"
    "CALL (ex, perts, regions) { UNWIND ex.moves AS x WITH perts[x[0]] AS a, regions[x[1]] AS b, x "
    "CREATE (a)-[:MOVES {dW: x[2], abs_dW: x[3], rank: x[4]}]->(b) }\n"
    "CALL (ex, perts, tokens) { UNWIND ex.moves_token AS x WITH perts[x[0]] AS a, tokens[x[1]] AS b, x "
    "CREATE (a)-[:MOVES_TOKEN {dW_norm: x[2]}]->(b) }\n"
    "CALL (ex, tokens, perts, regions) { UNWIND ex.dw AS x WITH tokens[x[0]] AS a, perts[x[1]] AS p, regions[x[2]] AS b, x "
    "CREATE (a)-[:DW {perturbation: p.kind, dW: x[3], rank: x[4]}]->(b) }\n"
    "RETURN count(*) AS examples"
)

COMPLETE = "UNWIND $uids AS uid MATCH (e:Example {uid: uid}) SET e.complete = true, e.completed_at = datetime()"
NODE_ORDER = ("Example", "Region", "Token", "Timestep", "Perturbation")


def _rel_params(rows: list[dict]) -> list[dict]:
    return [
        {
            "a": r["a"],
            "b": r["b"],
            **({"perturbation": r["perturbation"]} if "perturbation" in r else {}),
            "props": {k: v for k, v in r.items() if k not in ("a", "b")},
        }
        for r in rows
    ]


class Neo4jWriter:
    """Writes ``GraphRows``: packed examples ``examples_per_statement`` at a time, flat rows in chunks of
    ``chunk_size`` per statement; one transaction per call."""

    def __init__(
        self,
        driver: Driver,
        database: str | None = None,
        chunk_size: int = 5000,
        examples_per_statement: int = 16,
        retry_seconds: float = 300.0,
        log: Callable[[str], None] | None = None,
    ):
        self.driver = driver
        self.database = database
        self.chunk_size = chunk_size
        self.examples_per_statement = examples_per_statement
        self.retry_seconds = retry_seconds
        self.log = log or (lambda s: None)
        self.nodes_written = 0
        self.rels_written = 0
        self.retries = 0

    def _with_retry(self, what: str, fn):
        delay, deadline = 0.5, time.monotonic() + self.retry_seconds
        while True:
            try:
                with self.driver.session(database=self.database) as session:
                    return session.execute_write(fn)
            except RETRYABLE as e:
                if time.monotonic() > deadline:
                    raise StcgError(
                        f"Neo4j unavailable for {self.retry_seconds:.0f} s while writing {what}: {type(e).__name__}"
                    ) from None
                self.retries += 1
                self.log(f"Neo4j unavailable ({type(e).__name__}); retrying {what} in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def write(self, rows: GraphRows) -> None:
        """Example subgraphs and flat rows in one transaction, then (in another) the completion markers."""

        def work(tx):
            for s in range(0, len(rows.examples), self.examples_per_statement):
                tx.run(EXAMPLE_STATEMENT, examples=rows.examples[s : s + self.examples_per_statement]).consume()
            for label in NODE_ORDER:
                data = rows.nodes.get(label) or []
                for s in range(0, len(data), self.chunk_size):
                    tx.run(node_statement(label), rows=data[s : s + self.chunk_size]).consume()
            for group, data in rows.rels.items():
                params = _rel_params(data)
                for s in range(0, len(params), self.chunk_size):
                    tx.run(rel_statement(group), rows=params[s : s + self.chunk_size]).consume()

        if rows.n_nodes or rows.n_rels:
            self._with_retry(f"{rows.n_nodes} nodes / {rows.n_rels} relationships", work)
        if rows.completes:
            self._with_retry("completion markers", lambda tx: tx.run(COMPLETE, uids=rows.completes).consume())
        self.nodes_written += rows.n_nodes
        self.rels_written += rows.n_rels

    def run_query(self, cypher: str, **params):
        """A read or write of our own fixed statements (used for Run bookkeeping)."""
        return self._with_retry("run bookkeeping", lambda tx: tx.run(cypher, **params).data())


def delete_run(driver: Driver, run_id: str, database: str | None = None) -> None:
    """Remove every node of a run (and its links), in batches of 10,000 (auto-commit, as Neo4j requires)."""
    with driver.session(database=database) as session:
        session.run(
            "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS", r=run_id
        ).consume()
