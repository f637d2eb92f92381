"""Bulk load vs the Bolt writer (relationships/s), side by side in one run on one server of its own and
the same synthetic STCGs of the demo model's shape (64 regions, 6 perturbations, top-k 5):

  bolt    the shipped packed writer (``ingest.writer.Neo4jWriter``, as ``stcg ingest``), one call per batch
          of 32 examples, into the server's database with the STCG schema;
  import  the same batches written as import files by ``ingest.sinks.csv_files.CsvSink`` (as ``--sink csv:DIR``),
          then ``ingest.bulk.load_csv`` (``stcg load``) into the emptied database: stop, neo4j-admin
          database import full, start, schema, counts checked.

Reported for the import: the neo4j-admin run alone (JVM start included), CSV writing + that run, and
the whole ``stcg load`` (server stop and start, schema, count checks).

    python benchmarks/bench_bulk_load.py [--examples 2000] [--batch 32]

Starts its own server (a temporary home on free ports; never the shared one) and stops it at the end.
Writes benchmarks/results/bulk_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from neo4j import GraphDatabase

from ingest.bulk import load_csv
from ingest.rows import GraphRows, graph_rows
from ingest.runs import RUN_MERGE, finish_run
from ingest.schema import ensure_schema
from ingest.sinks.csv_files import CsvSink
from ingest.writer import Neo4jWriter
from stcg.neo4j_runtime import NEO4J_VERSION, LocalNeo4j
from stcg_model.testing.synthetic import synthetic_graph


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batches(graphs, run_id: str, batch: int) -> list[GraphRows]:
    out = []
    for b in range(0, len(graphs), batch):
        rows = GraphRows()
        for g in graphs[b : b + batch]:
            rows.extend(graph_rows(g, run_id, top_k=5))
        out.append(rows)
    return out


def one_round(args, graphs, batches, n_nodes: int, n_rels: int) -> dict:
    """Bolt then import, on a fresh server of its own (started and stopped untimed)."""
    run_id = "bench-bulk"
    tmp = Path(tempfile.mkdtemp(prefix="stcg-bench-bulk-"))
    server = LocalNeo4j(
        home=tmp / "neo4j", bolt_port=_free_port(), http_port=_free_port(), heap=args.heap, pagecache=args.pagecache
    )
    out = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        server.start(log=lambda s: None)
        with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as driver:
            ensure_schema(driver)
            writer = Neo4jWriter(driver)
            for rows in _batches(graphs[: args.batch * 2], "bench-warmup", args.batch):  # JIT and page cache warm
                writer.write(rows)
            writer.run_query(RUN_MERGE, run_id=run_id, props={"name": run_id, "n_total": args.examples})
            t = time.perf_counter()
            for rows in batches:
                writer.write(rows)
            dt = time.perf_counter() - t
            finish_run(writer, run_id, finished=True)
            out["bolt"] = {"seconds": round(dt, 2), "relationships_per_s": round(n_rels / dt)}
            print("bolt", out["bolt"], flush=True)
            with driver.session() as s:  # empty again, for the import (Community imports into an empty database)
                s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()

        folder = tmp / "csv"
        sink = CsvSink(folder)
        sink.prepare()
        sink.claim_run(run_id, "bench", str(tmp / "store"), {"name": run_id, "n_total": args.examples})
        t = time.perf_counter()
        for rows in batches:
            sink.write(rows)
        csv_s = time.perf_counter() - t
        sink.finish(run_id, finished=True)
        size = sum(p.stat().st_size for p in folder.rglob("*.csv"))
        loaded = load_csv(folder, server, log=lambda s: print(" ", s, flush=True))
        assert (loaded["nodes"], loaded["relationships"]) == (n_nodes, n_rels), loaded
        imp = loaded["import_seconds"]
        out["import"] = {
            "csv_write_seconds": round(csv_s, 2),
            "csv_bytes": size,
            "admin_import_seconds": round(imp, 2),
            "admin_summary": loaded["admin_summary"],
            "relationships_per_s": round(n_rels / imp),
            "csv_plus_import_relationships_per_s": round(n_rels / (csv_s + imp)),
            "load_seconds": round(loaded["seconds"], 2),
            "csv_plus_load_relationships_per_s": round(n_rels / (csv_s + loaded["seconds"])),
        }
        print("import", out["import"], flush=True)
        bolt = out["bolt"]["relationships_per_s"]
        out["ratio"] = {
            "import_over_bolt": round(out["import"]["relationships_per_s"] / bolt, 2),
            "csv_plus_import_over_bolt": round(out["import"]["csv_plus_import_relationships_per_s"] / bolt, 2),
            "csv_plus_load_over_bolt": round(out["import"]["csv_plus_load_relationships_per_s"] / bolt, 2),
        }
        print("ratio", out["ratio"], flush=True)
        out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        server.stop(log=lambda s: None)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32, help="examples per writer call (one ingestion batch)")
    ap.add_argument("--rounds", type=int, default=2, help="side-by-side pairs, each on a fresh server")
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--pagecache", default="512m")
    ap.add_argument("--out", default="benchmarks/results/bulk_load.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    graphs = [synthetic_graph(f"ex{i}", rng) for i in range(args.examples)]
    batches = _batches(graphs, "bench-bulk", args.batch)
    n_nodes = sum(r.n_nodes for r in batches) + 1  # + the Run
    n_rels = sum(r.n_rels for r in batches)
    result = {
        "examples": args.examples,
        "batch": args.batch,
        "nodes": n_nodes,
        "relationships": n_rels,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs: see load averages)",
        "neo4j": NEO4J_VERSION,
        "server": {"heap": args.heap, "pagecache": args.pagecache},
        "rounds": [one_round(args, graphs, batches, n_nodes, n_rels) for _ in range(args.rounds)],
    }
    for key in ("import_over_bolt", "csv_plus_import_over_bolt", "csv_plus_load_over_bolt"):
        result[f"median_{key}"] = round(statistics.median(r["ratio"][key] for r in result["rounds"]), 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
