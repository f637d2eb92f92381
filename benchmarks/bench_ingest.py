"""End-to-end ingestion vs model work alone, on the same examples, in one process; plus graph size per example.

    python benchmarks/bench_ingest.py [--examples 64] [--model PATH] [--device cpu]
Measures (same easy-VQA sample, same batch size, deletion curves off and on):
  A. bare: batched `generate` of the 7 images of every example (clean + 6 perturbed, preprocessed);
  B. engine: STCGEngine.explain_batch alone (no database);
  C. ingest: `stcg ingest` end to end (images read, engine, rows, file store, Neo4j writes overlapped).
Writes benchmarks/results/ingest_<device>.json. Needs a running Neo4j (NEO4J_* variables).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from ingest.datasets import open_dataset
from ingest.pipeline import IngestConfig, run_ingest
from ingest.writer import delete_run
from stcg.db import connect
from stcg_model.engine import STCGEngine, VQAInput
from stcg_model.loading import load_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", default="/tmp/stcg-bench-store")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model, device=args.device)
    exs = open_dataset("easy-vqa", split="test", sample=args.examples, seed=3)
    inputs = [VQAInput(e.example_id, e.load_image(), e.question, e.meta()) for e in exs]
    result = {"model": lm.name, "device": args.device, "examples": len(exs), "batch_size": args.batch_size,
              "threads": torch.get_num_threads()}
    driver = connect()
    for deletion in (0, 10):
        engine = STCGEngine(lm, "all", deletion_steps=deletion)
        engine.explain_batch(inputs[:2])  # warm-up
        # A: bare generate of the same 7 images per example (perturbed images made beforehand)
        prepared = [engine._prepare(x) for x in inputs]
        clean = engine.explain(inputs, batch_size=args.batch_size)
        arrays = []
        for p, g in zip(prepared, clean):
            arrays.append(p.pixels)
            arrays.extend(engine._perturb(p, spec, g.attribution) for spec in engine.perturbations)
        t = time.perf_counter()
        with torch.no_grad():
            for s in range(0, len(prepared), args.batch_size):
                rows = [(p, None) for p in prepared[s:s + args.batch_size] for _ in range(7)]
                pv = engine._pixel_values(arrays[7 * s:7 * (s + args.batch_size)])
                ids, am = engine._encoder_inputs(rows)
                lm.model.generate(pixel_values=pv, input_ids=ids, attention_mask=am, max_new_tokens=10, do_sample=False)
        bare = time.perf_counter() - t
        # B: engine alone
        t = time.perf_counter()
        engine.explain(inputs, batch_size=args.batch_size)
        eng = time.perf_counter() - t
        # C: end-to-end ingestion (fresh run each time)
        run_name = f"bench-ingest-d{deletion}"
        delete_run(driver, run_name)
        shutil.rmtree(Path(args.store) / run_name, ignore_errors=True)
        cfg = IngestConfig(dataset="easy-vqa", split="test", sample=args.examples, seed=3, model=args.model,
                           device=args.device, batch_size=args.batch_size, deletion_steps=deletion, run_name=run_name,
                           store=args.store)
        summary = run_ingest(cfg, progress=False, log=lambda s: None)
        store_bytes = sum(p.stat().st_size for p in (Path(args.store) / run_name / "shards").iterdir())
        n = len(exs)
        result[f"deletion_{deletion}"] = {
            "bare_generate_ex_per_s": round(n / bare, 2), "engine_ex_per_s": round(n / eng, 2),
            "ingest_ex_per_s": round(summary.written / summary.seconds, 2),
            "ingest_over_bare": round((summary.written / summary.seconds) / (n / bare), 3),
            "ingest_over_engine": round((summary.written / summary.seconds) / (n / eng), 3),
            "nodes_per_example": summary.nodes / max(1, summary.written),
            "relationships_per_example": summary.relationships / max(1, summary.written),
            "file_store_bytes_per_example": round(store_bytes / max(1, summary.written)),
        }
        print(deletion, result[f"deletion_{deletion}"], flush=True)
        delete_run(driver, run_name)
    out = Path(args.out or f"benchmarks/results/ingest_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    driver.close()


if __name__ == "__main__":
    main()
