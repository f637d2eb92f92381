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

from ingest import rows as tables
from ingest.rows import REL_TYPES, GraphRows
from ingest.schema import EXAMPLE_CHILDREN
from ingest.statements import statement
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


def _has_rel(label: str) -> str:
    """The Example -> ``label`` relationship type (``REL_TYPES``)."""
    return next(t for start, t, end, _ in REL_TYPES.values() if start == "Example" and end == label)


def _children(key: str, label: str) -> str:
    """Create the nodes of payload list ``key`` and bind them, in order, to the list variable ``key``."""
    return (
        f"CALL (e, ex) {{ UNWIND ex.{key} AS props CREATE (n:{label}) SET n = props "
        f"CREATE (e)-[:{_has_rel(label)}]->(n) RETURN collect(n) AS {key} }}\n"
    )


def link_block(key: str) -> str:
    """The CALL block that creates the links of payload table ``key`` from its index rows ``x``.

    Generated from ``LINK_COLUMNS`` (column order: ``x[i]`` is column ``i``), ``LINK_ENDS`` (which
    reference columns are the start and end node) and ``REL_TYPES`` (relationship type), so the
    statement cannot drift from the tables ``example_payload`` fills.
    """
    group, cols = tables.LINK_COLUMNS[key]
    start, end, offset = tables.LINK_ENDS[key]
    rtype = REL_TYPES[group][1]
    lists = list(dict.fromkeys(tables.REF_COLUMNS[c] for c in cols if c in tables.REF_COLUMNS))
    binds = [
        f"{tables.REF_COLUMNS[start]}[x[{cols.index(start)}]] AS a",
        f"{tables.REF_COLUMNS[end]}[x[{cols.index(end)}]{f' + {offset}' if offset else ''}] AS b",
    ]
    props = []
    for i, c in enumerate(cols):
        if c in (start, end):
            continue
        if c in tables.REF_COLUMNS:  # a node reference kept as a property of that node (DW's kind, ATTRIBUTES' method)
            binds.append(f"{tables.REF_COLUMNS[c]}[x[{i}]] AS {c}_node")
            name, node_property = tables.REF_PROPERTY[c]
            props.append(f"{name}: {c}_node.{node_property}")
        else:
            props.append(f"{c}: x[{i}]")
    return (
        f"CALL (ex, {', '.join(lists)}) {{ UNWIND ex.{key} AS x WITH {', '.join(binds)}, x "
        f"CREATE (a)-[:{rtype} {{{', '.join(props)}}}]->(b) }}\n"
    )


def example_statement() -> str:
    """The packed statement for a list ``$examples`` of ``example_payload`` dicts (see module docstring)."""
    return (
        "UNWIND $examples AS ex\n"
        "MERGE (run:Run {uid: ex.run_id}) ON CREATE SET run.run_id = ex.run_id\n"
        "MERGE (e:Example {uid: ex.example.uid})\n"
        "SET e += ex.example\n"
        "MERGE (run)-[:HAS_EXAMPLE]->(e)\n"
        "WITH e, ex\n"
        # a rerun of an example an interrupted run left incomplete replaces what is there
        f"CALL (e) {{ MATCH (e)-[:{'|'.join(_has_rel(label) for label in tables.NODE_LISTS.values())}]->(old) "
        "DETACH DELETE old }\n"
        + "".join(_children(key, label) for key, label in tables.NODE_LISTS.items())
        + "".join(link_block(key) for key in tables.LINK_COLUMNS)
        + "RETURN count(*) AS examples"
    )


EXAMPLE_STATEMENT = example_statement()

COMPLETE = statement("mark_complete")
NODE_ORDER = ("Example", *EXAMPLE_CHILDREN)


def rel_params(group: str, rows: list[dict]) -> list[dict]:
    """Flat relationship rows (``{"a": uid, "b": uid, **props}``) as ``rel_statement(group)`` takes them."""
    key = REL_TYPES[group][3]
    return [
        {
            "a": r["a"],
            "b": r["b"],
            **({key: r[key]} if key else {}),
            "props": {k: v for k, v in r.items() if k not in ("a", "b")},
        }
        for r in rows
    ]


class Neo4jWriter:
    """Writes ``GraphRows`` into Neo4j: one write transaction per ``write`` call, then the completion
    markers in a second one; every transaction is retried with exponential backoff while Neo4j is
    unreachable.

    Arguments:
        driver: an open ``neo4j.Driver`` (``stcg.db.connect``); the writer never closes it.
        database: database name (None: the server's default).
        chunk_size: flat rows (failed examples' nodes and links) per UNWIND statement.
        examples_per_statement: packed example subgraphs per ``EXAMPLE_STATEMENT`` run (16 measured best).
        retry_seconds: how long a transaction is retried while Neo4j is unavailable before a one-line
            ``StcgError``; waits grow from 0.5 s, doubling, up to 10 s.
        log: called with one line per retry (None: silent).

    ``nodes_written``, ``rels_written`` and ``retries`` count what this writer did.
    """

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

    def transaction(self, what: str, fn, write: bool = True):
        """``fn(tx)`` in one managed write (or read) transaction, retried while Neo4j is unavailable; its result."""
        return self._with_retry(what, fn, write)

    def _with_retry(self, what: str, fn, write: bool = True):
        delay, deadline = 0.5, time.monotonic() + self.retry_seconds
        while True:
            try:
                with self.driver.session(database=self.database) as session:
                    return session.execute_write(fn) if write else session.execute_read(fn)
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
                params = rel_params(group, data)
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
