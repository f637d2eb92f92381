"""The one-statement-per-chunk example writer against the real Neo4j: same graph as flat rows, reruns replace."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.rows import GraphRows, flat_rows, graph_rows, payload_counts
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter, node_statement, rel_params, rel_statement
from stcg_model.testing.synthetic import synthetic_graph

CONTENT = """
MATCH (:Run {uid: $run})-[:HAS_EXAMPLE]->(e:Example)
OPTIONAL MATCH (e)-[h]->(n)
OPTIONAL MATCH (n)-[x]->(m)
WITH e, type(h) AS h, n, x, m
RETURN e.uid AS e, properties(e) AS ep, h, n.uid AS n, properties(n) AS np, type(x) AS x, properties(x) AS xp, m.uid AS m
ORDER BY e, h, n, x, m, xp.perturbation, xp.method
"""


def _content(driver, run):
    with driver.session() as s:
        rows = s.run(CONTENT, run=run).data()
    out = []
    for r in rows:  # uids and run ids differ between the two runs only by their prefix
        r = {k: (v.replace(run, "RUN") if isinstance(v, str) else v) for k, v in r.items()}
        for k in ("ep", "np"):
            if r[k]:
                r[k] = {
                    a: (b.replace(run, "RUN") if isinstance(b, str) else b)
                    for a, b in r[k].items()
                    if a not in ("complete", "completed_at")
                }  # the completion marker is tested elsewhere
        out.append(r)
    return out


def _graphs(n=6, seed=5, methods=(), prefix="ex"):
    rng = np.random.default_rng(seed)
    return [synthetic_graph(f"{prefix}{i}", rng, methods=methods) for i in range(n)]


def test_packed_writer_writes_the_same_graph_as_flat_rows(driver, run_id):
    """Also for examples with other attribution methods (Explanation nodes, ATTRIBUTES / RANKS / UNDER links)."""
    ensure_schema(driver)
    flat_run = run_id + "-flat"
    graphs = _graphs() + _graphs(3, seed=6, methods=("rollout", "occlusion"), prefix="m")
    packed = GraphRows()
    for g in graphs:
        packed.extend(graph_rows(g, run_id, 5))
    Neo4jWriter(driver).write(packed)
    with driver.session() as s:  # the reference: one flat UNWIND MERGE statement per label / link group
        s.run("MERGE (r:Run {uid: $r}) SET r.run_id = $r", r=flat_run).consume()
        for g in graphs:
            flat = flat_rows(graph_rows(g, flat_run, 5).examples[0])
            for label, data in flat.nodes.items():
                s.run(node_statement(label), rows=data).consume()
            for group, data in flat.rels.items():
                s.run(rel_statement(group), rows=rel_params(group, data)).consume()
    try:
        a, b = _content(driver, run_id), _content(driver, flat_run)
        assert len(a) == len(b) > 1000 and a == b
        with driver.session() as s:
            n_nodes = s.run("MATCH (n {run_id: $r}) WHERE NOT n:Run RETURN count(n) AS c", r=run_id).single()["c"]
            n_rels = s.run("MATCH (n {run_id: $r})-[x]->() RETURN count(x) AS c", r=run_id).single()["c"]
        nodes, rels = map(sum, zip(*(payload_counts(x) for x in packed.examples)))
        assert (n_nodes, n_rels) == (nodes, rels) == (packed.n_nodes, packed.n_rels)
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=flat_run).consume()


def test_rewriting_an_example_replaces_it(driver, run_id):
    """An example left incomplete by a crash is written again on resume: nothing is duplicated."""
    ensure_schema(driver)
    graphs = _graphs(3, seed=9)
    rows = GraphRows()
    for g in graphs:
        rows.extend(graph_rows(g, run_id, 5))
    w = Neo4jWriter(driver)
    w.write(rows)
    first = _content(driver, run_id)
    again = GraphRows()
    for g in graphs[1:]:
        again.extend(graph_rows(g, run_id, 5))
    w.write(again)
    assert _content(driver, run_id) == first
    # a changed example (e.g. rerun with another top-k) replaces its old links instead of adding to them
    w.write(graph_rows(graphs[0], run_id, 2))
    with driver.session() as s:
        ranks = s.run(
            "MATCH (:Example {uid: $u})-[:HAS_TOKEN]->(:Token)-[a:ATTENDS]->() RETURN max(a.rank) AS k, count(a) AS n",
            u=f"{run_id}/ex0",
        ).single()
    assert ranks["k"] == 2 and ranks["n"] == 2 * len(graphs[0].tokens)


# The packed statement as it was written by hand before it was generated from ``LINK_COLUMNS``
# (ingest/writer.py at 7ef47cb): the generated one must build exactly the same graph.
HAND_WRITTEN_STATEMENT = (
    "UNWIND $examples AS ex\n"
    "MERGE (run:Run {uid: ex.run_id}) ON CREATE SET run.run_id = ex.run_id\n"
    "MERGE (e:Example {uid: ex.example.uid})\n"
    "SET e += ex.example\n"
    "MERGE (run)-[:HAS_EXAMPLE]->(e)\n"
    "WITH e, ex\n"
    "CALL (e) { MATCH (e)-[:HAS_TOKEN|HAS_REGION|HAS_STEP|HAS_PERTURBATION]->(old) DETACH DELETE old }\n"
    "CALL (e, ex) { UNWIND ex.regions AS props CREATE (n:Region) SET n = props "
    "CREATE (e)-[:HAS_REGION]->(n) RETURN collect(n) AS regions }\n"
    "CALL (e, ex) { UNWIND ex.tokens AS props CREATE (n:Token) SET n = props "
    "CREATE (e)-[:HAS_TOKEN]->(n) RETURN collect(n) AS tokens }\n"
    "CALL (e, ex) { UNWIND ex.steps AS props CREATE (n:Timestep) SET n = props "
    "CREATE (e)-[:HAS_STEP]->(n) RETURN collect(n) AS steps }\n"
    "CALL (e, ex) { UNWIND ex.perturbations AS props CREATE (n:Perturbation) SET n = props "
    "CREATE (e)-[:HAS_PERTURBATION]->(n) RETURN collect(n) AS perts }\n"
    "CALL (ex, tokens, regions) { UNWIND ex.attends AS x WITH tokens[x[0]] AS a, regions[x[1]] AS b, x "
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
    "CALL (ex, tokens, perts, regions) { UNWIND ex.dw AS x WITH tokens[x[0]] AS a, perts[x[1]] AS p, "
    "regions[x[2]] AS b, x CREATE (a)-[:DW {perturbation: p.kind, dW: x[3], rank: x[4]}]->(b) }\n"
    "RETURN count(*) AS examples"
)


def _write_packed(driver, run, graphs, statement=None, monkeypatch=None):
    import ingest.writer as writer_module

    if statement is not None:
        monkeypatch.setattr(writer_module, "EXAMPLE_STATEMENT", statement)
    rows = GraphRows()
    for g in graphs:
        rows.extend(graph_rows(g, run, 5))
    Neo4jWriter(driver).write(rows)


def test_generated_statement_builds_the_graph_of_the_hand_written_one(driver, run_id, monkeypatch):
    from ingest.writer import EXAMPLE_STATEMENT

    ensure_schema(driver)
    old_run = run_id + "-hand"
    graphs = _graphs(4, seed=11)
    assert EXAMPLE_STATEMENT != HAND_WRITTEN_STATEMENT  # generated (names and order differ), not copied
    try:
        _write_packed(driver, run_id, graphs)
        _write_packed(driver, old_run, graphs, HAND_WRITTEN_STATEMENT, monkeypatch)
        new, old = _content(driver, run_id), _content(driver, old_run)
        assert len(new) == len(old) > 500 and new == old
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=old_run).consume()


def test_link_column_order_has_one_source(driver, run_id, monkeypatch):
    """Reorder every link table's columns in ``LINK_COLUMNS`` alone: payload, generated statement and
    flat rows follow, and the graph is the same as with the shipped order."""
    import ingest.rows as rows_module
    from ingest.writer import example_statement

    ensure_schema(driver)
    graphs = _graphs(3, seed=13)
    ref_run = run_id + "-ref"
    try:
        _write_packed(driver, ref_run, graphs)
        shuffled = {key: (group, tuple(reversed(cols))) for key, (group, cols) in rows_module.LINK_COLUMNS.items()}
        monkeypatch.setattr(rows_module, "LINK_COLUMNS", shuffled)
        payload = graph_rows(graphs[0], run_id, 5).examples[0]
        first = payload["attends"][0]  # now (rank, weight, region, token)
        assert first[0] == 1 and isinstance(first[1], float) and first[3] == 0
        _write_packed(driver, run_id, graphs, example_statement(), monkeypatch)
        assert _content(driver, run_id) == _content(driver, ref_run)
    finally:
        with driver.session() as s:
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=ref_run).consume()


def test_link_tables_are_checked_against_each_other(monkeypatch):
    import ingest.rows as rows_module

    monkeypatch.setitem(rows_module.LINK_ENDS, "attends", ("region", "token", 0))  # reversed
    with pytest.raises(AssertionError, match="do not match ATTENDS Token -> Region"):
        rows_module._check_link_tables()
