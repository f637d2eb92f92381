"""Peak memory of every attribution method, measured on CPU, and a formula for the full-size model.

What is measured. Each measurement is one ``method.compute(lm, batch)`` call on ``B`` rows (random
images at the model's input size, one question, answers forced to ``T`` steps; memory depends on
shapes, not on values). Two independent meters:

- **torch allocations** (the number the tables use): the call runs under ``torch.profiler`` with
  ``profile_memory=True``, which records every allocation and free of the CPU tensor allocator
  with its size and time. The running sum of those events is the bytes of tensors alive that the
  call created; its maximum is the call's peak. Tensors that autograd saves for backward (the
  activations of the whole forward, the attention maps, the per-step gradients) are ordinary
  allocations of that allocator, so they are counted while they live, and nothing that existed
  before the call (weights, inputs) is. It is exact and independent of what else the machine runs.
- **RSS** (a cross-check): the same call in a fresh subprocess, after a warm-up call on one row;
  the process's peak resident set is reset (``/proc/self/clear_refs`` = 5) just before the call
  and ``VmHWM - VmRSS(before)`` read after it. It adds what the allocator does not see (malloc
  arenas, oneDNN scratch, the Python objects) and loses what was freed memory reused, so it is
  noisy at a few MiB; it is reported next to the torch number for the small models only.

Models: the tiny random BLIP-2 of the tests (``tiny_blip2``, 32 px, 4 x 4 regions, 4 queries,
width 32), the same at the full-size geometry (``tiny224``: 224 px, 16 x 16 regions + CLS,
32 queries, width 64), the shipped demo model (``default_model()``), and the real
``Salesforce/blip2-flan-t5-xl`` architecture (``flan_t5_xl_config``: full widths) with random
bfloat16 weights at a reduced depth: a base stack (ViT 1, Q-Former 2, T5 encoder 1, decoder 1
layers) and the same with two more layers of one stack at a time, so each stack's cost per layer
is measured and the full depth (39 / 12 / 24 / 24) extrapolated linearly. The whole 4B-parameter
model (8 GB of bf16 weights, a batch of gradient passes on 2 shared cores) is not built.

The formula (``predict``) counts, per batch row, the elements each method keeps, from the
architecture's sizes and the operations of the transformers 5.x modules (one line per saved
tensor, see ``saved_activations``), times the bytes per element; the JSON holds its prediction
next to every measurement (``ratio = measured / predicted``) and its full-size prediction.

    python benchmarks/bench_attribution_memory.py                 # everything (~25 min here)
    python benchmarks/bench_attribution_memory.py --parts tiny,demo --batches 8
    python benchmarks/bench_attribution_memory.py --device cuda --batches 1,8,32 --out X.json   # GPU step
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

METHODS = ["attention", "rollout", "relevancy", "gradcam", "occlusion"]
QUESTION = "what color is the shape in the picture ?"
ROOT = Path(__file__).resolve().parents[1]
XL_DEPTH = {"vision": 39, "qformer": 12, "encoder": 24, "decoder": 24}
XL_BASE = {"vision": 1, "qformer": 2, "encoder": 1, "decoder": 1}


# ----------------------------------------------------------------------------- models and batches
def build(spec: str, dtype: str = "float32", device: str = "cpu"):
    """A ``LoadedModel`` by name: ``tiny``, ``tiny224``, ``demo`` or ``xl:V,Qf,E,D`` (full widths,
    these depths, random weights)."""
    from stcg_model.testing.tiny import tiny_blip2

    if spec == "tiny":
        return tiny_blip2("t5", seed=11, dtype=dtype)
    if spec == "tiny224":
        return tiny_blip2(
            "t5", image_size=224, patch_size=14, num_query_tokens=32, hidden=64, seed=0, dtype=dtype, device=device
        )
    if spec == "demo":
        from stcg_model.families.loading import load_model

        return load_model(None, device="cpu", dtype=dtype)
    if spec.startswith("xl:"):
        from stcg_model.families.blip2.configs import build_model, flan_t5_xl_config
        from stcg_model.families.blip2.loading import prepare
        from stcg_model.training.tokenizer import build_word_tokenizer, make_processor

        v, q, e, d = (int(x) for x in spec[3:].split(","))
        cfg = flan_t5_xl_config()
        cfg.vision_config.num_hidden_layers = v
        cfg.qformer_config.num_hidden_layers = q
        cfg.text_config.num_layers = e
        cfg.text_config.num_decoder_layers = d
        torch.set_default_dtype(getattr(torch, dtype))  # weights made in the target dtype (half the RAM)
        try:
            with torch.device(device):
                model = build_model(cfg, seed=0)
        finally:
            torch.set_default_dtype(torch.float32)
        _native_patch_convolution(model)
        tok = build_word_tokenizer([QUESTION + " red blue green yes no"])  # ids < 32100: valid flan-t5 ids
        return prepare(model, make_processor(tok, 224, 32), f"blip2-flan-t5-xl-architecture-{spec}", device, dtype)
    raise ValueError(spec)


def _native_patch_convolution(model) -> None:
    """Run the patch-embedding convolution with oneDNN off. On this CPU (AVX2, no native bf16)
    oneDNN's bfloat16 convolution allocates a 199 MiB scratch buffer for one 224 px image and frees
    it inside the op: a CPU artefact, the same at any depth, that would otherwise be the peak of
    every shallow full-width run. Only this module changes; its output is the same convolution."""
    conv = model.vision_model.embeddings.patch_embedding
    state = {}

    def pre(module, args):
        state["on"] = torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)

    def post(module, args, output):
        torch._C._set_mkldnn_enabled(state.pop("on", True))

    conv.register_forward_pre_hook(pre)
    conv.register_forward_hook(post)


def make_batch(lm, B: int, T: int, seed: int = 0):
    """``B`` rows as the engine hands them to the methods: random images, ``QUESTION``, answers of
    ``T`` steps (``T - 1`` word tokens then ``</s>``)."""
    from PIL import Image

    from stcg_model.attribution.base import AttributionBatch
    from stcg_model.engine.core import STCGEngine, VQAInput

    eng = STCGEngine(lm, "center_mask", deletion_steps=0)
    side = int(lm.model.config.vision_config.image_size)
    rng = np.random.default_rng(seed)
    exs = [
        VQAInput(f"ex{i}", Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)), QUESTION)
        for i in range(B)
    ]
    prep = eng.prepare_batch(exs).prepared
    word = [i for i in range(2, 30) if i not in (eng.image_token_id, eng.eos_id, eng.pad_id)][: T - 1]
    answer = word + [eng.eos_id]
    batch = AttributionBatch(
        pixel_values=eng._pixel_values([p.pixels for p in prep]),
        images=[p.pixels for p in prep],
        grids=[p.grid for p in prep],
        prompt_ids=[eng.passes.prompt_ids(p) for p in prep],
        answers=[list(answer) for _ in prep],
        token_positions=[eng.passes.question_positions(p) for p in prep],
        is_eos=[np.array([t == eng.eos_id for t in answer]) for _ in prep],
        fill=eng.fill,
        to_pixels=eng._pixel_values,
    )
    eng.close()
    return batch


def _first_rows(batch, n: int):
    from stcg_model.attribution.base import subset_batch

    return subset_batch(batch, list(range(n)))


# ----------------------------------------------------------------------------- meters
def torch_peak(fn) -> tuple[int, int, float]:
    """(peak bytes of CPU tensors allocated by ``fn`` and alive at once, peak bytes of numpy and
    other Python allocations (``tracemalloc``), seconds). See the module docstring."""
    import tracemalloc

    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    secs = time.perf_counter() - t0
    py_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak, py_peak, secs


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_growth(fn) -> int | None:
    """Peak resident-set growth (bytes) during ``fn``: peak reset, then ``VmHWM - VmRSS(before)``."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def _run(lm, method: str, batch):
    from stcg_model.attribution.base import get_attribution

    return lambda: get_attribution(method).compute(lm, batch)


def child_rss(spec: str, method: str, B: int, T: int, dtype: str) -> None:
    """Entry of the RSS subprocess: prints one JSON line."""
    torch.manual_seed(0)
    lm = build(spec, dtype)
    batch = make_batch(lm, B, T)
    _run(lm, method, _first_rows(batch, 1))()  # warm-up: kernels, lazy initialisation
    print(json.dumps({"rss_bytes": rss_growth(_run(lm, method, batch))}))


def rss_in_subprocess(spec, method, B, T, dtype) -> int | None:
    cmd = [sys.executable, __file__, "--child", spec, method, str(B), str(T), dtype]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        print(res.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(lines[-1])["rss_bytes"]


# ----------------------------------------------------------------------------- the formula
def arch(config) -> dict:
    """The sizes the formula needs, from a ``Blip2Config``."""
    vc, qc, tc = config.vision_config, config.qformer_config, config.text_config
    freq = max(1, int(qc.cross_attention_frequency or 1))
    return {
        "img": int(vc.image_size),
        "s": (vc.image_size // vc.patch_size) ** 2 + 1,  # patches + CLS
        "dv": vc.hidden_size,
        "fv": vc.intermediate_size,
        "hv": vc.num_attention_heads,
        "Lv": vc.num_hidden_layers,
        "Q": config.num_query_tokens,
        "dq": qc.hidden_size,
        "fq": qc.intermediate_size,
        "hq": qc.num_attention_heads,
        "Lq": qc.num_hidden_layers,
        "Lc": sum(1 for i in range(qc.num_hidden_layers) if i % freq == 0),
        "d": tc.d_model,
        "di": tc.num_heads * tc.d_kv,
        "dff": tc.d_ff,
        "gated": bool(getattr(tc, "is_gated_act", False)),
        "h": tc.num_heads,
        "Le": tc.num_layers,
        "Ld": tc.num_decoder_layers,
        "V": tc.vocab_size,
    }


def attention_maps(a: dict, L: int, T: int) -> dict[str, int]:
    """Elements of the attention maps (heads kept) the methods record, per row, by stack:
    Q-Former self (Lq h Q^2) and cross (Lc h Q s), T5 encoder self (Le h L^2), decoder self
    (Ld h T^2) and cross (Ld h T L)."""
    return {
        "qformer_self": a["Lq"] * a["hq"] * a["Q"] ** 2,
        "qformer_cross": a["Lc"] * a["hq"] * a["Q"] * a["s"],
        "encoder_self": a["Le"] * a["h"] * L * L,
        "decoder_self": a["Ld"] * a["h"] * T * T,
        "decoder_cross": a["Ld"] * a["h"] * T * L,
    }


def saved_activations(a: dict, L: int, T: int) -> dict[str, int]:
    """Elements autograd saves for backward, per row, maps excluded (``attention_maps``), by stack.

    The pixel input requires grad (``methods.chains.traced_with_grad``), so every activation of the
    whole forward is saved, the vision tower included. Per layer, from the modules' operations:

    - ViT layer (pre-LN, SDPA): LN1 in, LN1 out, qkv (3d), SDPA out, its contiguous copy, LN2 in,
      LN2 out (9 s dv), fc1 out and GELU out (2 s fv); plus the embeddings and post-LN (2 s dv);
    - Q-Former self-attention (eager): q, k, v, context, LN in, LN out (6 Q dq); cross-attention
      (every ``cross_attention_frequency``-th layer): q, context, LN in, LN out (4 Q dq) and k, v
      over the image positions (2 s dq); FFN: dense out, GELU out (2 Q fq), LN in, LN out (2 Q dq);
      the query LN and the language projection (Q dq + Q d);
    - T5 encoder layer (eager): per RMS norm its normalised and weighted outputs (2 L d, two norms),
      q, k, v, context (4 L di), the residual stream after each sub-block (2 L d); FFN gated-GELU:
      wi_0 out, GELU out, wi_1 out, product (4 L dff), ReLU: its output (1 L dff); the embeddings
      (2 L d: lookup, image slots scattered in) and the final norm (2 L d);
    - T5 decoder layer: the same on T steps with three sub-blocks (self, cross, FFN: 9 T d; q, k, v,
      context of self, q and context of cross: 6 T di), cross k, v over the encoder (2 L di);
    - the answer's log-softmax over the vocabulary, float32 (T V, counted at 4 bytes in
      ``predict``).
    """
    ffn = 4 if a["gated"] else 1
    return {
        "vision": a["Lv"] * a["s"] * (9 * a["dv"] + 2 * a["fv"]) + 2 * a["s"] * a["dv"],
        "qformer": a["Lq"] * (6 * a["Q"] * a["dq"] + 2 * a["Q"] * a["fq"] + 2 * a["Q"] * a["dq"])
        + a["Lc"] * (4 * a["Q"] * a["dq"] + 2 * a["s"] * a["dq"])
        + a["Q"] * (a["dq"] + a["d"]),
        "encoder": a["Le"] * L * (6 * a["d"] + 4 * a["di"] + ffn * a["dff"]) + 4 * L * a["d"],
        "decoder": a["Ld"] * (T * (9 * a["d"] + 6 * a["di"] + ffn * a["dff"]) + 2 * L * a["di"]) + 2 * T * a["d"],
    }


def forward_working_set(a: dict, L: int, T: int) -> int:
    """Elements alive at once inside one layer of a forward without gradients (per row): the
    largest of a ViT layer at its MLP (residual, LN out, fc1 out, GELU out: s (2 dv + 2 fv)), a
    Q-Former cross-attention (k, v over the image, scores and weights: 2 s dq + 2 hq Q s), a T5
    encoder layer (3 L d + 2 h L^2 + 3 L dff) and the logits (2 T V)."""
    return max(
        a["s"] * (2 * a["dv"] + 2 * a["fv"]),
        2 * a["s"] * a["dq"] + 2 * a["hq"] * a["Q"] * a["s"],
        3 * L * a["d"] + 2 * a["h"] * L * L + 3 * L * a["dff"],
        2 * T * a["V"],
    )


def predict(a: dict, B: int, L: int, T: int, nbytes: int) -> dict[str, dict]:
    """Predicted peak bytes of each method on ``B`` rows (prompt length ``L``, ``T`` answer steps,
    ``nbytes`` per element of the model's dtype), with the terms that make it.

    - relevancy: the larger of two moments: the end of the last backward (the autograd graph of
      activations and maps, the maps' float64 copy, the gradients of every map for each of the
      ``T`` steps) and the chains after it (maps, their float64 copy, the step gradients and their
      float64 sum, float64 temporaries of one layer's map);
    - gradcam: the larger of the graph plus the gradients of the Q-Former cross-attention maps (one
      backward) and what is alive after it (maps, gradients, float64 temporaries of one
      cross-attention layer). The graph starts at the vision tower's output: the tower runs without
      autograd (``stcg_model.attribution.methods.chains.vision_as_leaf``), so its activations are not
      saved (before that change they were 81% of the full-size model's total);
    - attention: every recorded map plus one layer's forward working set;
    - rollout: the same plus the float64 head means of every map;
    - occlusion: one chunk of 64 rows in a forward without gradients (pixel tensors in float32 and
      in the model's dtype, the working set); apart from the torch total, all ``B x blocks``
      greyed 8-bit images are held as numpy arrays (``numpy_greyed_images``).
    """
    maps = attention_maps(a, L, T)
    act = saved_activations(a, L, T)
    M = sum(maps.values())
    # the gradient methods run the vision tower without autograd (``vision_as_leaf``): its activations
    # are never saved, only its output (the leaf the graph starts from) is
    A = sum(act.values()) - act["vision"] + a["s"] * a["dv"]
    logsm = T * a["V"] * 4
    graph = A * nbytes + M * nbytes + logsm
    heads = {
        "qformer_self": a["hq"],
        "qformer_cross": a["hq"],
        "encoder_self": a["h"],
        "decoder_self": a["h"],
        "decoder_cross": a["h"],
    }
    layer_map = max(a["hq"] * a["Q"] * a["s"], a["hq"] * a["Q"] ** 2, a["h"] * L * L, a["h"] * T * L)
    head_means = sum(v // heads[k] for k, v in maps.items())
    work = forward_working_set(a, L, T) * nbytes
    side = int(round((a["s"] - 1) ** 0.5))
    b = 1
    while -((-side // b) ** 2) > 64:
        b += 1
    blocks = (-(-side // b)) ** 2
    chunk = min(64, B * blocks)
    px = 3 * a["img"] ** 2
    out = {
        "relevancy": {
            "graph": B * graph,
            "maps_float64": B * M * 8,
            "step_gradients": B * T * M * nbytes,
        },
        # after the backward the chains hold the maps (model dtype and float64), the step gradients,
        # their float64 sum, and float64 temporaries of one layer's map
        "relevancy_after_backward": {
            "maps": B * M * nbytes,
            "maps_float64": B * M * 8,
            "step_gradients": B * T * M * nbytes,
            "gradient_sum_float64": B * M * 8,
            "temporaries_float64": 3 * B * layer_map * 8,
        },
        "gradcam": {"graph": B * graph, "cross_gradients": B * maps["qformer_cross"] * nbytes},
        "gradcam_after_backward": {
            "maps": B * M * nbytes,
            "cross_gradients": B * maps["qformer_cross"] * nbytes,
            "temporaries_float64": 4 * B * a["hq"] * a["Q"] * a["s"] * 8,
        },
        "attention": {"maps": B * M * nbytes, "working_set": B * work},
        "rollout": {"maps": B * M * nbytes, "head_means_float64": B * head_means * 8, "working_set": B * work},
        "occlusion": {
            "chunk_pixels": chunk * px * (4 + nbytes),
            "chunk_working_set": chunk * work,
        },
    }
    for v in out.values():
        v["total"] = sum(v.values())  # torch tensors: what the torch meter counts
    for m in ("relevancy", "gradcam"):
        after = out.pop(f"{m}_after_backward")["total"]
        out[m]["after_backward"] = after
        out[m]["total"] = max(out[m]["total"], after)
    out["occlusion"]["numpy_greyed_images"] = B * blocks * px  # 8-bit numpy images, not in the total
    return out


# ----------------------------------------------------------------------------- the runs
def measure_model(spec: str, batches, T: int, dtype: str, methods, rss: bool) -> dict:
    lm = build(spec, dtype)
    a = arch(lm.model.config)
    nbytes = torch.finfo(lm.dtype).bits // 8
    params = sum(p.numel() for p in lm.model.parameters())
    rows = []
    for B in batches:
        batch = make_batch(lm, B, T)
        L = len(batch.prompt_ids[0])
        pred = predict(a, B, L, T, nbytes)
        for m in methods:
            _run(lm, m, _first_rows(batch, 1))()  # warm-up
            peak, py_peak, secs = torch_peak(_run(lm, m, batch))
            row = {
                "model": spec,
                "dtype": dtype,
                "method": m,
                "batch": B,
                "T": T,
                "L": L,
                "torch_peak_bytes": peak,
                "python_peak_bytes": py_peak,
                "seconds": round(secs, 3),
                "predicted_bytes": pred[m]["total"],
                "predicted_terms": pred[m],
                "ratio_measured_to_predicted": round(peak / pred[m]["total"], 3),
            }
            if rss and B == max(batches):  # the cross-check where the signal is largest
                row["rss_growth_bytes"] = rss_in_subprocess(spec, m, B, T, dtype)
            rows.append(row)
            print(
                f"{spec:>14} {dtype:>8} B={B:<3} {m:>10}  torch {peak / 2**20:9.2f} MiB  "
                f"pred {pred[m]['total'] / 2**20:9.2f} MiB  ratio {row['ratio_measured_to_predicted']:.2f}"
                + (f"  rss {row['rss_growth_bytes'] / 2**20:8.2f} MiB" if row.get("rss_growth_bytes") else "")
                + f"  numpy/python {py_peak / 2**20:7.2f} MiB  {secs:.2f}s",
                flush=True,
            )
    del lm
    gc.collect()
    return {"arch": a, "parameters": params, "rows": rows}


def xl_extrapolation(batches, T: int, dtype: str, methods) -> dict:
    """Full widths at reduced depth: the base stack, then two more layers of each stack in turn."""
    configs = {"base": dict(XL_BASE)}
    for stack in XL_BASE:
        c = dict(XL_BASE)
        c[stack] += 2
        configs[stack] = c
    measured = {}
    for name, c in configs.items():
        spec = "xl:" + ",".join(str(c[k]) for k in ("vision", "qformer", "encoder", "decoder"))
        measured[name] = measure_model(spec, batches, T, dtype, methods, rss=False)
    base_rows = {(r["method"], r["batch"]): r for r in measured["base"]["rows"]}
    full = {}
    for (m, B), r0 in base_rows.items():
        per_layer = {}
        est = r0["torch_peak_bytes"]
        for stack in XL_BASE:
            r1 = next(r for r in measured[stack]["rows"] if r["method"] == m and r["batch"] == B)
            per_layer[stack] = (r1["torch_peak_bytes"] - r0["torch_peak_bytes"]) / 2
            est += per_layer[stack] * (XL_DEPTH[stack] - XL_BASE[stack])
        full[f"{m}@{B}"] = {"method": m, "batch": B, "per_layer_bytes": per_layer, "extrapolated_bytes": est}
    return {"configs": configs, "measured": measured, "full_depth": full}


def full_size_formula(T: int, L: int, batches) -> dict:
    from stcg_model.families.blip2.configs import flan_t5_xl_config

    a = arch(flan_t5_xl_config())
    out = {"arch": a, "L": L, "T": T}
    for dt, nbytes in (("float32", 4), ("bfloat16", 2)):
        out[dt] = {str(B): predict(a, B, L, T, nbytes) for B in batches}
    return out


def device_run(device: str, spec: str, batches, T: int, reps: int, out: Path) -> None:
    """The GPU step of ``benchmarks/gpu_session.sh``: every method on ``spec`` (the full-size
    architecture, random bfloat16 weights) on ``device``; per method and batch the peak of
    ``torch.cuda.max_memory_allocated`` over what was allocated before the call, the median
    seconds of ``reps`` calls, and both relative to ``attention``. On ``cpu`` (a dry run of the
    script) the torch meter above stands in for the CUDA counter."""
    dev = torch.device(device)
    t0 = time.time()
    lm = build(spec, "bfloat16", device)
    info = {
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else cpu_name(),
        "model": spec,
        "dtype": "bfloat16",
        "parameters": sum(p.numel() for p in lm.model.parameters()),
        "built_s": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "T": T,
    }
    print(json.dumps(info), flush=True)
    a = arch(lm.model.config)
    rows = []

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for B in batches:
        batch = make_batch(lm, B, T)
        L = len(batch.prompt_ids[0])
        pred = predict(a, B, L, T, 2)
        for m in METHODS:
            fn = _run(lm, m, batch)
            try:
                fn()  # warm-up
                sync()
                if dev.type == "cuda":
                    gc.collect()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    fn()
                    sync()
                    peak = torch.cuda.max_memory_allocated() - base
                else:
                    peak = torch_peak(fn)[0]
                secs = []
                for _ in range(reps):
                    t1 = time.perf_counter()
                    fn()
                    sync()
                    secs.append(time.perf_counter() - t1)
                row = {"method": m, "batch": B, "L": L, "peak_bytes": peak, "seconds": float(np.median(secs))}
            except torch.OutOfMemoryError as e:
                row = {"method": m, "batch": B, "L": L, "error": str(e).splitlines()[0][:200]}
                gc.collect()
                torch.cuda.empty_cache()
            row["predicted_bytes"] = pred[m]["total"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        base_row = next((r for r in rows if r["method"] == "attention" and r["batch"] == B and "seconds" in r), None)
        for r in rows:
            if r["batch"] == B and base_row and "seconds" in r:
                r["time_vs_attention"] = round(r["seconds"] / base_row["seconds"], 2)
                r["memory_vs_attention"] = round(r["peak_bytes"] / max(1, base_row["peak_bytes"]), 2)
        out.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    print("wrote", out)


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "cpu"
    return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="tiny,tiny224,demo,xl", help="comma-separated: tiny, tiny224, demo, xl")
    ap.add_argument("--batches", default="8,32", help="batch sizes of the small models")
    ap.add_argument("--xl-batches", default="1,4", help="batch sizes of the full-width reduced-depth models")
    ap.add_argument("--xl-dtypes", default="bfloat16")
    ap.add_argument(
        "--xl-methods",
        default="attention,rollout,relevancy,gradcam",
        help="methods of the reduced-depth runs (occlusion: 64 full-width passes per row, 2+ min a config here)",
    )
    ap.add_argument("--answer-steps", type=int, default=3, help="T: answer length in steps, </s> included")
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS cross-check subprocesses")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/attribution_memory.json"))
    ap.add_argument("--device", default=None, help="cuda: the GPU step (full size, bf16; gpu_session.sh)")
    ap.add_argument("--device-model", default="xl:39,12,24,24", help="with --device: tiny224 or xl:V,Qf,E,D")
    ap.add_argument("--reps", type=int, default=3, help="with --device: timed calls per method (median)")
    ap.add_argument("--child", nargs=5, metavar=("SPEC", "METHOD", "B", "T", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec, m, B, T, dt = args.child
        child_rss(spec, m, int(B), int(T), dt)
        return
    torch.manual_seed(0)
    if args.device:
        batches = [int(x) for x in args.batches.split(",")]
        device_run(args.device, args.device_model, batches, args.answer_steps, args.reps, Path(args.out))
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    batches = [int(x) for x in args.batches.split(",")]
    T = args.answer_steps
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    result["info"] = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "answer_steps": T,
        "question": QUESTION,
        "meter": "torch profiler allocation timeline (peak of live CPU tensor bytes created by the call)",
    }
    small = result.setdefault("small_models", {})
    for spec in ("tiny", "tiny224", "demo"):
        if spec in parts:
            small[spec] = measure_model(spec, batches, T, "float32", METHODS, rss=not args.no_rss)
            out_path.write_text(json.dumps(result, indent=1))
    if "xl" in parts:
        xl = result.setdefault("xl_reduced_depth", {})
        xlb = [int(x) for x in args.xl_batches.split(",")]
        for dt in args.xl_dtypes.split(","):
            xl[dt] = xl_extrapolation(xlb, T, dt, [m for m in args.xl_methods.split(",") if m])
            out_path.write_text(json.dumps(result, indent=1))
        L = next(iter(next(iter(xl.values()))["measured"]["base"]["rows"]))["L"]
        result["full_size_formula"] = full_size_formula(T, L, sorted({1, 8, 32, *xlb}))
    out_path.write_text(json.dumps(result, indent=1))
    print("wrote", out_path)


if __name__ == "__main__":
    main()
