"""Ray Data ingestion vs the single-process path on one machine: the overhead of Ray, as a ratio.

    python benchmarks/bench_ray_ingest.py [--examples 256] [--rounds 3] [--model PATH]

The same easy-VQA sample (seed 3, as bench_ingest.py), batch 16, default engine settings (six
perturbations, deletion curves on), demo model, CPU, into the real Neo4j; the configurations run
side by side, interleaved round by round, and the medians are kept:

  single       `stcg ingest` (``run_ingest``): one process, model thread + writer thread
  ray          `stcg ingest --ray`: starts a local Ray (all cores), runs the pipeline, shuts Ray down
  ray warm     the same pipeline on a Ray this process already started (the Ray start-up excluded;
               the actors still start, load the model and end with every run)
  ray warm x2  as ray warm with --workers 2 (two CPU actors, one torch thread each)

Each run is a fresh run id (deleted afterwards), so every run explains and writes all examples.
Writes benchmarks/results/ray_ingest.json. Needs a running Neo4j (NEO4J_* variables) and the Ray extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import time
import uuid
from pathlib import Path

from bench_stcg_engine import cpu_name

from ingest.pipeline import IngestConfig, run_ingest
from ingest.writer import delete_run
from stcg.db import connect


def one(args, ray_address, workers, store) -> dict:
    run = f"bench-ray-{uuid.uuid4().hex[:8]}"
    cfg = IngestConfig(
        dataset="easy-vqa",
        split="test",
        sample=args.examples,
        seed=3,
        model=args.model,
        device="cpu",
        batch_size=args.batch_size,
        run_name=run,
        store=str(store),
        ray=ray_address,
        workers=workers,
    )
    t = time.perf_counter()
    summary = run_ingest(cfg, progress=False, log=lambda s: None)
    seconds = time.perf_counter() - t
    assert summary.written == args.examples and summary.status == "complete", summary.describe()
    with connect() as driver:
        delete_run(driver, run)
    shutil.rmtree(store / run, ignore_errors=True)
    return {"seconds": seconds, "relationships": summary.relationships}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--store", default="/tmp/stcg-bench-ray-store")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray_ingest.json"))
    args = ap.parse_args()
    import ray

    store = Path(args.store)
    configs = {"single": (None, None, False), "ray": ("local", None, False)}
    configs.update({"ray warm": ("local", None, True), "ray warm x2": ("local", 2, True)})
    times: dict[str, list[float]] = {k: [] for k in configs}
    load = [os.getloadavg()[0]]  # the machine is shared: its 1-minute load average before each round, and at the end
    one(args, None, None, store)  # warm-up: dataset cache, model files, Neo4j
    for r in range(args.rounds):
        load.append(os.getloadavg()[0])
        for name, (address, workers, warm) in configs.items():
            if warm and not ray.is_initialized():
                ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            if not warm and ray.is_initialized():
                ray.shutdown()
            res = one(args, address, workers, store)
            times[name].append(res["seconds"])
            print(f"round {r}: {name}: {res['seconds']:.1f} s ({args.examples / res['seconds']:.2f} ex/s)", flush=True)
    if ray.is_initialized():
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "stcg ingest --ray vs the single-process path, same examples, one machine, CPU",
        "model": args.model or "demo model (stcg_model/demo_model)",
        "device": "cpu",
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "ray": ray.__version__,
        "examples": args.examples,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "load_average_1min": load + [os.getloadavg()[0]],
        "seconds": times,
        "median_seconds": med,
        "examples_per_second": {k: args.examples / v for k, v in med.items()},
        "ratio_to_single": {k: v / med["single"] for k, v in med.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: round(v, 3) for k, v in result["ratio_to_single"].items()}))


if __name__ == "__main__":
    main()
