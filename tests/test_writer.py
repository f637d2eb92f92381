"""The one-statement-per-chunk example writer against the real Neo4j: same graph as flat rows, reruns replace."""

from __future__ import annotations

import numpy as np

from ingest.rows import GraphRows, flat_rows, graph_rows, payload_counts
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter, node_statement, rel_statement
from stcg_model.synthetic import synthetic_graph

CONTENT = """
MATCH (:Run {uid: $run})-[:HAS_EXAMPLE]->(e:Example)
OPTIONAL MATCH (e)-[h]->(n)
OPTIONAL MATCH (n)-[x]->(m)
WITH e, type(h) AS h, n, x, m
RETURN e.uid AS e, properties(e) AS ep, h, n.uid AS n, properties(n) AS np, type(x) AS x, properties(x) AS xp, m.uid AS m
ORDER BY e, h, n, x, m, xp.perturbation
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


def _graphs(n=6, seed=5):
    rng = np.random.default_rng(seed)
    return [synthetic_graph(f"ex{i}", rng) for i in range(n)]


def test_packed_writer_writes_the_same_graph_as_flat_rows(driver, run_id):
    ensure_schema(driver)
    flat_run = run_id + "-flat"
    graphs = _graphs()
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
                s.run(
                    rel_statement(group),
                    rows=[
                        {
                            "a": r["a"],
                            "b": r["b"],
                            **({"perturbation": r["perturbation"]} if "perturbation" in r else {}),
                            "props": {k: v for k, v in r.items() if k not in ("a", "b")},
                        }
                        for r in data
                    ],
                ).consume()
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
