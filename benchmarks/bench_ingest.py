"""End-to-end ingestion vs model work alone, on the same examples, in one process; plus graph size per example.

    python benchmarks/bench_ingest.py [--examples 64] [--model PATH] [--device cpu]
Measures (same easy-VQA sample, same batch size, deletion curves off and on):
  A. bare: batched `generate` of the 7 images of every example (clean + 6 perturbed), default (SDPA)
     attention as `from_pretrained` gives it, pixel tensors made beforehand (the strict baseline:
     model time only); A'. the same from the 8-bit images, converted by the engine's own batched
     preprocessing (`FastBlipPixels`); A''. the same with the stock `processor(images=...)` call a
     plain inference script would make;
  B. engine: STCGEngine.explain_batch alone (no database);
  C. ingest: `stcg ingest` end to end (images read, engine, rows, file store, Neo4j writes overlapped).
Writes benchmarks/results/ingest_<device>.json. Needs a running Neo4j (NEO4J_* variables).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from bench_stcg_engine import cpu_name

from ingest.pipeline import IngestConfig, run_ingest
from ingest.writer import delete_run
from stcg.datasets import open_dataset
from stcg.db import connect
from stcg.images import to_image
from stcg_model.engine.core import FastBlipPixels, STCGEngine, VQAInput
from stcg_model.families.blip2.loading import use_capture_attention
from stcg_model.families.loading import load_model


def neo4j_pid() -> int | None:
    """The local server's pid (``stcg neo4j start``), for its CPU time; None for a remote server."""
    try:
        from stcg.neo4j_runtime.server import LocalNeo4j

        return LocalNeo4j().status().pid
    except Exception:
        return None


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """(CPU seconds of this process, of the Neo4j server process or nan) so far."""
    t = os.times()
    server = float("nan")
    if pid is not None:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            server = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return t.user + t.system, server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", default="/tmp/stcg-bench-store")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model, device=args.device)
    exs = open_dataset("easy-vqa", split="test", sample=args.examples, seed=3)
    inputs = [VQAInput(e.example_id, e.load_image(), e.question, e.meta()) for e in exs]
    result = {
        "model": lm.name,
        "device": args.device,
        "cpu": cpu_name() if args.device == "cpu" else None,
        "examples": len(exs),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
    }
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
        pvs = [
            engine._pixel_values(arrays[7 * s : 7 * (s + args.batch_size)])
            for s in range(0, len(prepared), args.batch_size)
        ]

        fast = FastBlipPixels.for_processor(lm.processor.image_processor)

        def bare_generate(pixels: str) -> float:
            """pixels: "given" (tensors made beforehand), "fast" (8-bit images, FastBlipPixels), "processor"."""
            lm.model.set_attn_implementation("sdpa")  # as a user's from_pretrained model runs
            t = time.perf_counter()
            with torch.no_grad():
                for b, s in enumerate(range(0, len(prepared), args.batch_size)):
                    rows = [(p, None) for p in prepared[s : s + args.batch_size] for _ in range(7)]
                    pv = pvs[b]
                    if pixels == "fast":
                        pv = fast(arrays[7 * s : 7 * (s + args.batch_size)])
                    elif pixels == "processor":
                        images = [to_image(a) for a in arrays[7 * s : 7 * (s + args.batch_size)]]
                        pv = lm.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
                    ids, am = engine.passes.prompt_inputs(rows)
                    lm.model.generate(
                        pixel_values=pv, input_ids=ids, attention_mask=am, max_new_tokens=10, do_sample=False
                    )
            seconds = time.perf_counter() - t
            use_capture_attention(lm.model)
            return seconds

        def engine_alone() -> float:
            t = time.perf_counter()
            engine.explain(inputs, batch_size=args.batch_size)
            return time.perf_counter() - t

        def engine_one_thread() -> float:
            """The engine on one torch thread: its CPU seconds are its work without the spin-waiting
            of idle OpenMP threads, the honest input to the CPU budget in docs/benchmarks.md."""
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return engine_alone()
            finally:
                torch.set_num_threads(threads)

        run_name = f"bench-ingest-d{deletion}"

        def fresh() -> None:  # each ingest starts from an empty run (not timed)
            delete_run(driver, run_name)
            shutil.rmtree(Path(args.store) / run_name, ignore_errors=True)

        def ingest() -> tuple[float, object]:
            cfg = IngestConfig(
                dataset="easy-vqa",
                split="test",
                sample=args.examples,
                seed=3,
                model=args.model,
                device=args.device,
                batch_size=args.batch_size,
                deletion_steps=deletion,
                run_name=run_name,
                store=args.store,
            )
            summary = run_ingest(cfg, progress=False, log=lambda s: None)
            return summary.seconds, summary

        # the machine's speed drifts: A, A', B, C are interleaved for --rounds rounds and medians kept
        times = {"bare": [], "bare_images": [], "bare_proc": [], "engine": [], "engine_1_thread": [], "ingest": []}
        cpu = {k: [] for k in times}  # (this process, Neo4j server) CPU seconds per measurement
        pid = neo4j_pid()

        def measured(key, fn):
            c0 = cpu_seconds(pid)
            out = fn()
            c1 = cpu_seconds(pid)
            cpu[key].append((c1[0] - c0[0], c1[1] - c0[1]))
            return out

        for _ in range(args.rounds):
            times["bare"].append(measured("bare", lambda: bare_generate("given")))
            times["bare_images"].append(measured("bare_images", lambda: bare_generate("fast")))
            times["bare_proc"].append(measured("bare_proc", lambda: bare_generate("processor")))
            times["engine"].append(measured("engine", engine_alone))
            times["engine_1_thread"].append(measured("engine_1_thread", engine_one_thread))
            fresh()
            sec, summary = measured("ingest", ingest)
            times["ingest"].append(sec)
        bare, bare_img, bare_proc, eng, ing = (
            float(np.median(times[k])) for k in ("bare", "bare_images", "bare_proc", "engine", "ingest")
        )
        n = len(exs)
        store_bytes = sum(p.stat().st_size for p in (Path(args.store) / run_name / "shards").iterdir())
        result[f"deletion_{deletion}"] = {
            "bare_generate_ex_per_s": round(n / bare, 2),
            "bare_from_images_ex_per_s": round(n / bare_img, 2),
            "bare_with_processor_ex_per_s": round(n / bare_proc, 2),
            "engine_ex_per_s": round(n / eng, 2),
            "engine_over_bare": round(bare / eng, 3),
            "engine_1_thread_ex_per_s": round(n / float(np.median(times["engine_1_thread"])), 2),
            "ingest_ex_per_s": round(n / ing, 2),
            "ingest_over_bare": round(bare / ing, 3),
            "ingest_over_bare_from_images": round(bare_img / ing, 3),
            "engine_over_bare_from_images": round(bare_img / eng, 3),
            "ingest_over_bare_with_processor": round(bare_proc / ing, 3),
            "ingest_over_engine": round(eng / ing, 3),
            "rounds_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            # CPU seconds (median over rounds): this process (torch threads, writer thread) and the Neo4j server
            "cpu_seconds_process": {k: round(float(np.median([c[0] for c in v])), 2) for k, v in cpu.items()},
            "cpu_seconds_neo4j": {k: round(float(np.median([c[1] for c in v])), 2) for k, v in cpu.items()},
            "cores": os.cpu_count(),
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
