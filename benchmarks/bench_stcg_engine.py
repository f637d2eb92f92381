"""Cost of building STCGs (clean + 6 perturbations, capture on) vs a bare batched `generate` of the
same 7 images per example, measured side by side in one process. Bare generation runs with the
default (SDPA) attention a `from_pretrained` model has; it starts from pixel tensors made beforehand
(strict: model time only), second, from the 8-bit images (converted by the same batched
preprocessing the engine uses), and third, with all-eager attention from pixel tensors, the
configuration of shared/bench/blip2_bare_anchor.py (the issue's reference numbers). Each pairing is
timed alternately, --reps times, medians kept.

    python benchmarks/bench_stcg_engine.py --tiny --device cpu            # tiny model, CPU
    python benchmarks/bench_stcg_engine.py --device cuda                  # flan-t5-xl architecture, random bf16
Writes a JSON line per batch size to --out (default benchmarks/results/stcg_engine_<device>.jsonl).
Random weights do not change FLOPs; answers are forced to --new-tokens tokens on both sides.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stcg_model.engine.core import FastBlipPixels, STCGEngine, VQAInput
from stcg_model.families.blip2.loading import prepare, use_capture_attention
from stcg_model.testing.tiny import build_model, flan_t5_xl_config, tiny_blip2
from stcg_model.training.tokenizer import build_word_tokenizer, make_processor


def full_size(device):
    words = ["what color is the shape in the picture ? red blue green yes no"]
    tok = build_word_tokenizer(words)
    cfg = flan_t5_xl_config()
    cfg.image_token_id = 32100
    t0 = time.time()
    with torch.device(device):
        model = build_model(cfg, seed=0)
    model.config.image_token_id = 32100
    proc = make_processor(tok, 224, 32)
    lm = prepare(model, proc, "blip2-flan-t5-xl-architecture-random", device=device)
    # the word-level tokenizer ids are < 32100, so they are valid flan-t5 ids; image token fixed at 32100
    lm.model.config.image_token_id = 32100
    return lm, time.time() - t0


def cpu_name() -> str:
    """The host CPU's model name and widest vector extension (CPU numbers differ 2x between hosts)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "cpu"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "cpu")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    vec = "avx512" if any(f.startswith("avx512") for f in flags) else "avx2" if "avx2" in flags else "other"
    return f"{name} ({vec})"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, dev, reps):
    fn()
    sync(dev)
    ts = []
    for _ in range(reps):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def timeit_pair(f, g, dev, reps):
    """Median seconds of f and of g, measured alternately so that drift of the machine hits both."""
    f()
    g()
    tf, tg = [], []
    for _ in range(reps):
        for fn, ts in ((f, tf), (g, tg)):
            sync(dev)
            t = time.perf_counter()
            fn()
            sync(dev)
            ts.append(time.perf_counter() - t)
    return float(np.median(tf)), float(np.median(tg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--image-size", type=int, default=224, help="side of the (square) input images")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.tiny:
        lm, built = (
            tiny_blip2("t5", image_size=224, patch_size=14, num_query_tokens=32, hidden=64, device=args.device),
            0.0,
        )
    else:
        lm, built = full_size(dev)
    out = Path(args.out or f"benchmarks/results/stcg_engine_{'tiny' if args.tiny else 'xl'}_{dev.type}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "model": lm.name,
        "dtype": str(lm.dtype),
        "built_s": round(built, 1),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(info), flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for n in map(int, args.batches.split(",")):
        exs = [
            VQAInput(
                f"ex{i}",
                Image.fromarray(rng.integers(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8)),
                "what color is the shape in the picture ?",
            )
            for i in range(n)
        ]
        engine = STCGEngine(lm, "all", max_new_tokens=args.new_tokens, deletion_steps=0)
        engine.min_new_tokens = args.new_tokens
        # the bare baseline: the same 7 images per example (clean + the 6 perturbed), preprocessed once
        prepared = [engine._prepare(e) for e in exs]
        ref = engine.explain_batch(exs)  # also warms up
        arrays = []
        for ex, g in zip(prepared, ref):
            arrays.append(ex.pixels)
            for spec in engine.perturbations:
                arrays.append(engine._perturb(ex, spec, g.attribution))
        pv = engine._pixel_values(arrays)
        ids, am = engine.passes.prompt_inputs([(p, None) for p in prepared for _ in range(7)])
        fast = FastBlipPixels.for_processor(lm.processor.image_processor)

        def bare(from_images: bool = False, attention: str = "sdpa"):
            """As a user runs it: the default (SDPA) attention everywhere; "eager" is the configuration of
            shared/bench/blip2_bare_anchor.py, which produced the issue's reference numbers."""
            lm.model.set_attn_implementation(attention)
            with torch.no_grad():
                pixels = fast(arrays).to(dev, lm.dtype) if from_images else pv
                lm.model.generate(
                    pixel_values=pixels,
                    input_ids=ids,
                    attention_mask=am,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                )

        def stcg():  # eager attention only where weights are captured
            use_capture_attention(lm.model)
            engine.explain_batch(exs)

        t_bare, t_stcg = timeit_pair(bare, stcg, dev, args.reps)
        t_bare_img, t_stcg2 = timeit_pair(lambda: bare(True), stcg, dev, args.reps)
        t_bare_eager, t_stcg3 = timeit_pair(lambda: bare(attention="eager"), stcg, dev, args.reps)
        use_capture_attention(lm.model)
        engine_del = STCGEngine(lm, "all", max_new_tokens=args.new_tokens, deletion_steps=10)
        engine_del.min_new_tokens = args.new_tokens
        t_del = timeit(lambda: engine_del.explain_batch(exs), dev, 1)
        row = {
            "examples": n,
            "images": 7 * n,
            "bare_generate_s": round(t_bare, 4),
            "stcg_s": round(t_stcg, 4),
            "bare_from_images_s": round(t_bare_img, 4),
            "stcg_s_second_pairing": round(t_stcg2, 4),
            "stcg_with_deletion_s": round(t_del, 4),
            "ratio_stcg_over_bare": round(t_stcg / t_bare, 3),
            "ratio_stcg_over_bare_from_images": round(t_stcg2 / t_bare_img, 3),
            "bare_eager_s": round(t_bare_eager, 4),
            "stcg_s_third_pairing": round(t_stcg3, 4),
            "ratio_stcg_over_bare_eager": round(t_stcg3 / t_bare_eager, 3),
            "bare_ex_per_s": round(n / t_bare, 2),
            "stcg_ex_per_s": round(n / t_stcg, 2),
            "stcg_with_deletion_ex_per_s": round(n / t_del, 2),
        }
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            engine.explain_batch(exs)
            row["stcg_peak_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    with out.open("w") as f:
        f.write(json.dumps(info) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
