"""Neo4j writer throughput (relationships/s), side by side on the same server and the same synthetic
STCGs of the demo model's shape (64 regions, 6 perturbations, top-k 5):

  naive   one auto-commit MERGE statement per node and per relationship;
  flat    UNWIND-batched MERGE per label / link group, links found by uid (the first writer);
  packed  the shipped writer: one statement per 16 examples, links created from index tables.

    python benchmarks/bench_writer.py [--examples 300] [--naive-examples 10]
Writes benchmarks/results/writer.json. Needs a running Neo4j (NEO4J_* variables).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ingest.rows import GraphRows, flat_rows, graph_rows
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter, node_statement, rel_params, rel_statement
from stcg.db import connect
from stcg_model.testing.synthetic import synthetic_graph


def _flatten(rows: GraphRows) -> GraphRows:
    out = GraphRows()
    for x in rows.examples:
        out.extend(flat_rows(x))
    return out


def flat_write(driver, rows: GraphRows) -> None:
    """The first batched writer: UNWIND MERGE per node label and link group, one transaction."""
    rows = _flatten(rows)

    def work(tx):
        for label in ("Example", "Region", "Token", "Timestep", "Perturbation"):
            if rows.nodes.get(label):
                tx.run(node_statement(label), rows=rows.nodes[label]).consume()
        for group, data in rows.rels.items():
            tx.run(rel_statement(group), rows=rel_params(group, data)).consume()

    with driver.session() as s:
        s.execute_write(work)
        s.run("UNWIND $u AS uid MATCH (e:Example {uid: uid}) SET e.complete = true", u=rows.completes).consume()


def naive_write(driver, rows: GraphRows) -> None:
    """What a first attempt looks like: one auto-commit MERGE per node and per relationship."""
    rows = _flatten(rows)
    with driver.session() as s:
        for label, data in rows.nodes.items():
            for r in data:
                s.run(node_statement(label), rows=[r]).consume()
        for group, data in rows.rels.items():
            for r in rel_params(group, data):
                s.run(rel_statement(group), rows=[r]).consume()
        for uid in rows.completes:
            s.run("MATCH (e:Example {uid: $u}) SET e.complete = true", u=uid).consume()


def cleanup(driver, run_id):
    with driver.session() as s:
        s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=run_id).consume()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--naive-examples", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="examples per writer call (one ingestion batch)")
    ap.add_argument("--out", default="benchmarks/results/writer.json")
    args = ap.parse_args()
    driver = connect()
    ensure_schema(driver)
    rng = np.random.default_rng(0)
    graphs = [synthetic_graph(f"ex{i}", rng) for i in range(args.examples)]
    result = {}
    for name, run_id, n in (
        ("naive", "bench-writer-naive", args.naive_examples),
        ("flat", "bench-writer-flat", args.examples),
        ("packed", "bench-writer-packed", args.examples),
    ):
        cleanup(driver, run_id)
        with driver.session() as s:
            s.run("MERGE (r:Run {uid: $r}) SET r.run_id = $r", r=run_id).consume()
        batches = []
        for b in range(0, n, args.batch):
            rows = GraphRows()
            for g in graphs[b : min(b + args.batch, n)]:
                rows.extend(graph_rows(g, run_id, top_k=5))
            batches.append(rows)
        n_rels = sum(r.n_rels for r in batches)
        n_nodes = sum(r.n_nodes for r in batches)
        writer = Neo4jWriter(driver)
        t = time.perf_counter()
        for rows in batches:
            {"naive": naive_write, "flat": flat_write}.get(name, lambda d, r: writer.write(r))(driver, rows)
        dt = time.perf_counter() - t
        result[name] = {
            "examples": n,
            "nodes": n_nodes,
            "relationships": n_rels,
            "seconds": round(dt, 3),
            "relationships_per_s": round(n_rels / dt),
            "examples_per_s": round(n / dt, 2),
        }
        print(name, result[name], flush=True)
        cleanup(driver, run_id)
    result["speedup"] = round(result["packed"]["relationships_per_s"] / result["naive"]["relationships_per_s"], 1)
    result["packed_over_flat"] = round(
        result["packed"]["relationships_per_s"] / result["flat"]["relationships_per_s"], 2
    )
    result["per_example"] = {
        "nodes": result["packed"]["nodes"] / args.examples,
        "relationships": result["packed"]["relationships"] / args.examples,
    }
    print("speedup", result["speedup"], "packed/flat", result["packed_over_flat"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    driver.close()


if __name__ == "__main__":
    main()
