"""p50 latency of every query template on runs of 1,000 and 10,000 synthetic STCGs written with the real writer.

    python benchmarks/bench_queries.py [--sizes 1000,10000] [--reps 5]
Writes benchmarks/results/queries.json (latencies, and the PROFILE of the slowest template at the
largest size). Needs a running Neo4j; the benchmark runs are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from ingest.rows import GraphRows, graph_rows
from ingest.runs import RUN_FINISH, RUN_MERGE
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter, delete_run
from queries.library import QueryLibrary, load_template, template_names
from stcg.db import connect
from stcg_model.testing.synthetic import synthetic_graph


def write_run(driver, run_id: str, n: int, batch: int = 64) -> float:
    w = Neo4jWriter(driver)
    w.run_query(RUN_MERGE, run_id=run_id, props={"name": run_id, "model": "synthetic", "dataset": "synthetic"})
    rng = np.random.default_rng(n)
    t = time.perf_counter()
    for s in range(0, n, batch):
        rows = GraphRows()
        for i in range(s, min(n, s + batch)):
            rows.extend(graph_rows(synthetic_graph(f"ex{i:06d}", rng), run_id, 5))
        w.write(rows)
    w.run_query(RUN_FINISH, run_id=run_id, finished=True, live=0)
    return time.perf_counter() - t


def params_for(name: str, run_id: str) -> dict:
    t = load_template(name)
    p = {"run_id": run_id} if any(x.name == "run_id" for x in t.params) else {}
    if name == "compare_runs":
        p = {"run_a": run_id, "run_b": run_id}
    if name in ("example_links", "example_graph"):
        p["example_id"] = "ex000007"
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/queries.json")
    args = ap.parse_args()
    driver = connect()
    ensure_schema(driver)
    lib = QueryLibrary(driver)
    result = {"sizes": {}}
    for n in map(int, args.sizes.split(",")):
        run_id = f"bench-queries-{n}"
        delete_run(driver, run_id)
        wt = write_run(driver, run_id, n)
        lat = {}
        for name in template_names():
            p = params_for(name, run_id)
            lib.run(name, **p)  # warm the plan cache
            ts = []
            for _ in range(args.reps):
                t = time.perf_counter()
                lib.run(name, **p)
                ts.append(time.perf_counter() - t)
            lat[name] = round(statistics.median(ts), 4)
            print(n, name, lat[name], flush=True)
        result["sizes"][str(n)] = {"write_seconds": round(wt, 1), "p50_seconds": lat}
        slowest = max(lat, key=lat.get)
        t = load_template(slowest)
        summary = driver.execute_query(
            "PROFILE " + "\n".join(ln for ln in t.cypher.splitlines() if not ln.startswith("//")),
            t.bind(**params_for(slowest, run_id)),
        ).summary

        def plan_lines(plan, depth=0):
            out = [
                f"{'  ' * depth}{plan['operatorType']} rows={plan.get('rows')} dbHits={plan.get('dbHits')} "
                f"{plan.get('args', {}).get('Details', '')}"[:200]
            ]
            for child in plan.get("children", []):
                out += plan_lines(child, depth + 1)
            return out

        result["sizes"][str(n)]["slowest"] = slowest
        result["sizes"][str(n)]["profile_of_slowest"] = plan_lines(summary.profile)
        if not args.keep:
            delete_run(driver, run_id)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    driver.close()


if __name__ == "__main__":
    main()
