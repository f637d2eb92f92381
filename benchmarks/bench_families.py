"""Speed and memory of the STCG engine per model family, side by side in one run.

``--part speed``: per family, a tiny random model of the real classes at one shared geometry (224 px,
patch 14: 16 x 16 regions, Qwen's merged blocks 8 x 8; width 64, 2 layers per stack): building STCGs (clean + the 6 perturbations,
attention captured, deletion curves off, answers forced to --new-tokens steps) against a bare batched
``generate`` of the same 7 images per example from pixel tensors made beforehand, with the model's own
attention (SDPA) and prompts padded as the family generates (left for decoder-only models). The two are
timed alternately, --reps times, medians kept; the ratio is what compares (CPU times move 2x between
hosts). BLIP-2 and InstructBLIP have 32 image slots (the Q-Former's queries), LLaVA 256 (one per patch),
Qwen2.5-VL 64 (one per merged 2 x 2 block), so the language model of LLaVA reads an 8x longer prompt.

``--part memory``: peak bytes of CPU tensors alive at once during ``explain_batch`` of one example (7
image rows, attention captured; torch's allocator events under the profiler, the meter of
``bench_attribution_memory.py``: weights and inputs made before the call are not counted) on the REAL
full-size architectures with random bfloat16 weights at reduced depth, and the same with more layers in
one stack at a time, so the cost per layer is measured and the full depth extrapolated linearly:
LLaVA-1.5-7B (CLIP ViT-L/14-336: 577 positions, 24 layers; Llama-2-7B: 32 layers; 576 image slots),
BLIP-2 flan-t5-xl (ViT-g 39, Q-Former 12, T5 24 + 24), InstructBLIP-Vicuna-7B (ViT-g 39, Q-Former 12 reading
the instruction, Llama 32) and Qwen2.5-VL-7B (windowed ViT 32 at 448 px: 1,024 patches, 256 image tokens;
Qwen2-7B 28 layers; ``qwen_vl_native``: a 640 x 480 image at its own resolution under the released pixel
bounds, 1,564 patches, 391 image tokens). The whole models (4-8B parameters) are not built on 2 shared cores.

``--part device`` (the GPU step, ``benchmarks/gpu_session.sh families``): the whole full-size models
(every layer, random bfloat16 weights) on ``--device``: STCG build vs bare generate as in ``speed``,
and ``torch.cuda.max_memory_allocated`` over the STCG build; on the CPU a dry run with the tiny models.

    python benchmarks/bench_families.py --part speed                # ~3 min here
    python benchmarks/bench_families.py --part memory               # ~6 min here
    python benchmarks/bench_families.py --part device --device cuda --batches 1,8
Writes benchmarks/results/families_<part>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

QUESTION = "what color is the shape in the picture ?"


def tiny_models() -> dict:
    """Builders of every family's kinds of language model at one geometry (224 px images): BLIP-2 with T5 and
    with OPT, InstructBLIP with T5 and with Llama (Vicuna's class), LLaVA (Llama), Qwen2.5-VL (Qwen2)."""
    from stcg_model.testing.tiny import tiny_blip2, tiny_instructblip, tiny_llava, tiny_qwen_vl

    geo = dict(image_size=224, patch_size=14, seed=0)
    return {
        "blip2-t5": lambda: tiny_blip2("t5", num_query_tokens=32, hidden=64, **geo),
        "blip2-opt": lambda: tiny_blip2("opt", num_query_tokens=32, hidden=64, **geo),
        "instructblip-t5": lambda: tiny_instructblip("t5", num_query_tokens=32, hidden=64, **geo),
        "instructblip-llama": lambda: tiny_instructblip("llama", num_query_tokens=32, hidden=64, **geo),
        "llava": lambda: tiny_llava(hidden=64, **geo),
        "qwen2.5-vl": lambda: tiny_qwen_vl("2.5", image_side=224, hidden=64, seed=0),
    }


def examples(n: int, size: int | tuple[int, int] = 224, seed: int = 0):
    """``n`` random images of ``size`` pixels (a side, or (width, height)) with the benchmark's question."""
    from stcg_model.engine.core import VQAInput

    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    return [
        VQAInput(f"ex{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), QUESTION) for i in range(n)
    ]


def timeit_pair(f, g, reps: int) -> tuple[float, float]:
    """Median seconds of ``f`` and of ``g``, measured alternately (drift of the machine hits both)."""
    f()
    g()
    tf, tg = [], []
    for _ in range(reps):
        for fn, ts in ((f, tf), (g, tg)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return float(np.median(tf)), float(np.median(tg))


def full_models(device: str) -> dict:
    """Builders of the whole full-size architectures with random bfloat16 weights on ``device`` (one at a time)."""
    return {
        "llava-1.5-7b": lambda: llava_at(24, 32, device),
        "blip2-flan-t5-xl": lambda: blip2_at(39, 12, 24, 24, device),
        "instructblip-vicuna-7b": lambda: instructblip_at(39, 12, 32, device),
        "qwen2.5-vl-7b": lambda: qwen_at(32, 28, device),
    }


def bare_inputs(eng, prompts, pv) -> dict:
    """What the model's own ``generate`` reads of the image besides the padded ids: the pixel values as the
    family's forward takes them (Qwen: flattened patches and ``image_grid_thw``), InstructBLIP's instruction."""
    p = eng.passes
    inputs = (
        p.model_inputs(pv, prompts) if hasattr(p, "model_inputs") else {"pixel_values": pv, **p.image_kwargs(prompts)}
    )
    return inputs


def speed(batches, new_tokens: int, reps: int, models: dict | None = None, device: str = "cpu", only=None) -> dict:
    """Per family (``models``: name -> builder; ``only``: name prefixes kept), STCG build vs bare ``generate``."""
    from stcg_model.engine.core import STCGEngine
    from stcg_model.engine.engine_config import EngineConfig
    from stcg_model.families.registry import family_for
    from stcg_model.families.teacher_forcing import pad_ids

    out = {}
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for name, build in (models or tiny_models()).items():
        if only and not any(name.startswith(f) for f in only):
            continue
        lm = build()
        load = family_for(lm).load.__module__  # the family's loading module re-applies capture attention
        use_capture = __import__(load, fromlist=["use_capture_attention"]).use_capture_attention
        rows = []
        for n in batches:
            exs = examples(n)
            eng = STCGEngine.from_config(
                lm, EngineConfig(perturbations="all", deletion_steps=0, max_new_tokens=new_tokens)
            )
            eng.min_new_tokens = new_tokens
            graphs = eng.explain_batch(exs)
            prepared = [eng._prepare(e) for e in exs]
            arrays = []
            for ex, g in zip(prepared, graphs):
                arrays.append(ex.pixels)
                arrays += [eng._perturb(ex, spec, g.attribution) for spec in eng.perturbations]
            pv = eng._pixel_values(arrays)
            prompts = [eng.passes.prompt_ids(p) for p in prepared for _ in range(7)]
            ids, am = pad_ids(prompts, eng.pad_id, not lm.is_encoder_decoder)
            ids, am = ids.to(dev), am.to(dev)
            image = bare_inputs(eng, prompts, pv)
            if "image_grid_thw" in image:  # Qwen numbers its positions from where the image tokens are
                image["mm_token_type_ids"] = (ids == eng.image_token_id).long()

            def bare():
                lm.model.set_attn_implementation("sdpa")
                with torch.no_grad():
                    sync()
                    lm.model.generate(
                        **image,
                        input_ids=ids,
                        attention_mask=am,
                        max_new_tokens=new_tokens,
                        min_new_tokens=new_tokens,
                        do_sample=False,
                        pad_token_id=eng.pad_id,
                    )
                    sync()

            def stcg():
                use_capture(lm.model)
                eng.explain_batch(exs)
                sync()

            t_bare, t_stcg = timeit_pair(bare, stcg, reps)
            use_capture(lm.model)
            row = {
                "examples": n,
                "images": 7 * n,
                "image_slots": eng.Q,
                "prompt_positions": len(eng.passes.prompt_ids(prepared[0])),
                "bare_generate_s": round(t_bare, 4),
                "stcg_s": round(t_stcg, 4),
                "ratio_stcg_over_bare": round(t_stcg / t_bare, 3),
            }
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                eng.explain_batch(exs)
                row["stcg_peak_over_weights_GiB"] = round((torch.cuda.max_memory_allocated() - before) / 2**30, 3)
            print(name, json.dumps(row), flush=True)
            rows.append(row)
            eng.close()
        out[name] = rows
        lm = eng = None  # the next model is built once this one is freed
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


# ----------------------------------------------------------------------------- memory at full size
def llava_at(vision_layers: int, lm_layers: int, device: str = "cpu"):
    from stcg_model.families.llava.configs import build_model, llava_1_5_7b_config
    from stcg_model.families.llava.loading import prepare
    from stcg_model.training.tokenizer import build_word_tokenizer, make_llava_processor

    cfg = llava_1_5_7b_config()
    cfg.vision_config.num_hidden_layers = vision_layers
    cfg.text_config.num_hidden_layers = lm_layers
    tok = build_word_tokenizer([QUESTION, "USER: ASSISTANT: red blue green yes no"], causal=True)
    # the word-level ids are < 32000, valid Llama ids; the image token is the checkpoint's (32000)
    with torch.device(device):
        model = build_model(cfg, seed=0).to(torch.bfloat16)
    proc = make_llava_processor(tok, 336, 14)
    image_id = tok.convert_tokens_to_ids("<image>")
    model.config.image_token_id = image_id  # the tokenizer's placeholder fills the model's image slots
    return prepare(model, proc, f"llava-1.5-7b-architecture-random:{vision_layers},{lm_layers}", device, "bfloat16")


def blip2_at(vision: int, qformer: int, enc: int, dec: int, device: str = "cpu"):
    from stcg_model.families.blip2.loading import prepare
    from stcg_model.testing.tiny import build_model, flan_t5_xl_config
    from stcg_model.training.tokenizer import build_word_tokenizer, make_processor

    cfg = flan_t5_xl_config()
    cfg.vision_config.num_hidden_layers = vision
    cfg.qformer_config.num_hidden_layers = qformer
    cfg.text_config.num_layers = enc
    cfg.text_config.num_decoder_layers = dec
    tok = build_word_tokenizer([QUESTION, "red blue green yes no"])
    with torch.device(device):
        model = build_model(cfg, seed=0).to(torch.bfloat16)
    model.config.image_token_id = 32100
    name = f"blip2-flan-t5-xl-architecture-random:{vision},{qformer},{enc},{dec}"
    lm = prepare(model, make_processor(tok, 224, 32), name, device, "bfloat16")
    lm.model.config.image_token_id = 32100
    return lm


def instructblip_at(vision: int, qformer: int, lm_layers: int, device: str = "cpu"):
    """``Salesforce/instructblip-vicuna-7b``'s architecture at the given depths, random bfloat16 weights."""
    from stcg_model.families.instructblip.configs import build_model, instructblip_vicuna_7b_config
    from stcg_model.families.instructblip.loading import prepare
    from stcg_model.training.tokenizer import build_word_tokenizer, make_instructblip_processor

    cfg = instructblip_vicuna_7b_config()
    cfg.vision_config.num_hidden_layers = vision
    cfg.qformer_config.num_hidden_layers = qformer
    cfg.text_config.num_hidden_layers = lm_layers
    words = [QUESTION, "question : short answer : red blue green yes no"]
    tok, qtok = build_word_tokenizer(words, causal=True), build_word_tokenizer(words)
    with torch.device(device):
        model = build_model(cfg, seed=0).to(torch.bfloat16)
    model.config.image_token_id = tok.convert_tokens_to_ids("<image>")  # word-level ids are valid Vicuna ids
    name = f"instructblip-vicuna-7b-architecture-random:{vision},{qformer},{lm_layers}"
    return prepare(model, make_instructblip_processor(tok, qtok, 224, 32), name, device, "bfloat16")


def qwen_at(vision: int, lm_layers: int, device: str = "cpu", side: int | None = 448):
    """``Qwen/Qwen2.5-VL-7B-Instruct``'s architecture at the given depths, random bfloat16 weights, images at
    ``side`` pixels (448: 16 x 16 merged blocks, 256 image tokens), or with ``side`` None at their own
    resolution under the released processor's pixel bounds (56^2 .. 3584^2: a 640 x 480 image is 23 x 17
    merged blocks, 391 image tokens)."""
    from stcg_model.families.qwen_vl.configs import build_model, qwen2_5_vl_7b_config
    from stcg_model.families.qwen_vl.loading import prepare
    from stcg_model.training.tokenizer import build_qwen_tokenizer, make_qwen_processor

    cfg = qwen2_5_vl_7b_config()
    cfg.vision_config.depth = vision
    cfg.vision_config.fullatt_block_indexes = [vision - 1]
    cfg.text_config.num_hidden_layers = lm_layers
    if side is not None:
        cfg.stcg_image_side = side
    tok = build_qwen_tokenizer([QUESTION, "you are a helpful assistant . system user red blue green yes no"])
    with torch.device(device):
        model = build_model(cfg, seed=0).to(torch.bfloat16)
    for key, t in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                   ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):  # fmt: skip
        setattr(model.config, key, tok.convert_tokens_to_ids(t))  # the word-level tokenizer's ids
    name = f"qwen2.5-vl-7b-architecture-random:{vision},{lm_layers}"
    processor = make_qwen_processor(tok, "2.5", side) if side else make_qwen_processor(tok, "2.5", 3584, min_side=56)
    return prepare(model, processor, name, device, "bfloat16")


NATIVE_IMAGE = (640, 480)
"""(width, height) of the image of the native-resolution Qwen memory case: a COCO image's usual size."""


def peak_of_explain(lm, new_tokens: int, image: tuple[int, int] | None = None) -> tuple[int, float]:
    """Peak bytes and seconds of ``explain_batch`` of one example: a square image at the model's side, or
    ``image`` (width, height)."""
    import gc
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_attribution_memory import torch_peak

    from stcg_model.engine.core import STCGEngine
    from stcg_model.engine.engine_config import EngineConfig

    eng = STCGEngine.from_config(lm, EngineConfig(perturbations="all", deletion_steps=0, max_new_tokens=new_tokens))
    eng.min_new_tokens = new_tokens
    if image is None:
        side = int(lm.processor.image_processor.size.get("height") or getattr(eng.pixels, "side", None) or 224)
        exs = examples(1, size=side)
    else:
        exs = examples(1, size=image)
    host = eng.prepare_batch(exs)
    peak, _, secs = torch_peak(lambda: eng.explain_batch(exs, host))
    eng.close()
    gc.collect()
    return peak, secs


def memory(new_tokens: int, families=("llava", "blip2"), save=lambda result: None) -> dict:
    """Peak memory per family in ``families``; ``save(result so far)`` after each, so a run stopped part-way
    keeps what it measured."""
    out = {"dtype": "bfloat16", "rows": 7, "answer_steps": new_tokens}
    measure = {
        "llava": ("llava-1.5-7b", lambda progress: llava_memory(new_tokens, progress)),
        "blip2": ("blip2-flan-t5-xl", lambda progress: blip2_memory(new_tokens, progress)),
        "instructblip": (
            "instructblip-vicuna-7b",
            lambda progress: stacks_memory(
                "instructblip", instructblip_at, {"vision": 39, "qformer": 12, "lm": 32}, (1, 2, 1), new_tokens
            ),
        ),
        "qwen_vl": (
            "qwen2.5-vl-7b",
            lambda progress: stacks_memory(
                "qwen_vl", qwen_at, {"vision": 32, "lm": 28}, (1, 1), new_tokens, progress=progress
            ),
        ),
        "qwen_vl_native": (
            "qwen2.5-vl-7b-native-640x480",
            lambda progress: stacks_memory(
                "qwen_vl_native",
                lambda v, n: qwen_at(v, n, side=None),
                {"vision": 32, "lm": 28},
                (1, 1),
                new_tokens,
                image=NATIVE_IMAGE,
                progress=progress,
            ),
        ),
    }
    for family in families:
        name, run = measure[family]
        # each measurement is saved as it comes (a family takes minutes per depth: a run stopped part-way keeps them)
        out[name] = run(lambda measured, name=name: save({**out, name: {"measured": measured, "partial": True}}))
        save(out)
    return out


def stacks_memory(
    label: str, build, full: dict, base: tuple, new_tokens: int, image=None, progress=lambda measured: None
) -> dict:
    """Peak at the ``base`` depths (one per stack of ``full``, in order), then with 2 more layers in one stack at a
    time; the full depth extrapolated linearly from the per-layer costs."""
    gib = 2**30
    meas = {}
    cases = {"base": base}
    for i, stack in enumerate(full):
        cases[f"{stack}+2"] = tuple(d + 2 if j == i else d for j, d in enumerate(base))
    for key, depths in cases.items():
        lm = build(*depths)
        peak, secs = peak_of_explain(lm, new_tokens, image)
        meas[key] = {"depths": depths, "peak_bytes": peak, "seconds": round(secs, 1)}
        progress(meas)
        print(label, key, round(peak / gib, 3), "GiB", flush=True)
        del lm
    per = {stack: (meas[f"{stack}+2"]["peak_bytes"] - meas["base"]["peak_bytes"]) / 2 for stack in full}
    peak = meas["base"]["peak_bytes"] + sum(per[k] * (full[k] - d) for k, d in zip(full, base))
    return {
        "measured": meas,
        "per_layer_bytes": per,
        "full_depth": full,
        "extrapolated_peak_GiB": round(peak / gib, 3),
    }


def llava_memory(new_tokens: int, progress=lambda measured: None) -> dict:
    gib = 2**30
    # LLaVA: base (1 vision, 1 language-model layer), then +2 in one stack at a time
    meas = {}
    for key, (v, n_lm) in {"base": (1, 1), "vision+2": (3, 1), "lm+2": (1, 3)}.items():
        lm = llava_at(v, n_lm)
        peak, secs = peak_of_explain(lm, new_tokens)
        meas[key] = {"vision_layers": v, "lm_layers": n_lm, "peak_bytes": peak, "seconds": round(secs, 1)}
        progress(meas)
        print("llava", key, round(peak / gib, 3), "GiB", flush=True)
        del lm
    per_v = (meas["vision+2"]["peak_bytes"] - meas["base"]["peak_bytes"]) / 2
    per_l = (meas["lm+2"]["peak_bytes"] - meas["base"]["peak_bytes"]) / 2
    full = meas["base"]["peak_bytes"] + per_v * 23 + per_l * 31
    return {
        "measured": meas,
        "per_vision_layer_bytes": per_v,
        "per_lm_layer_bytes": per_l,
        "full_depth": {"vision_layers": 24, "lm_layers": 32},
        "extrapolated_peak_GiB": round(full / gib, 3),
    }


def blip2_memory(new_tokens: int, progress=lambda measured: None) -> dict:
    gib = 2**30
    meas = {}
    base = (1, 2, 1, 1)
    for key, d in {"base": base, "vision+2": (3, 2, 1, 1), "qformer+2": (1, 4, 1, 1), "encoder+2": (1, 2, 3, 1),
                   "decoder+2": (1, 2, 1, 3)}.items():  # fmt: skip
        lm = blip2_at(*d)
        peak, secs = peak_of_explain(lm, new_tokens)
        meas[key] = {"depths": d, "peak_bytes": peak, "seconds": round(secs, 1)}
        progress(meas)
        print("blip2", key, round(peak / gib, 3), "GiB", flush=True)
        del lm
    per = {k: (meas[k]["peak_bytes"] - meas["base"]["peak_bytes"]) / 2 for k in meas if k != "base"}
    full = meas["base"]["peak_bytes"] + per["vision+2"] * 38 + per["qformer+2"] * 10 + per["encoder+2"] * 23
    full += per["decoder+2"] * 23
    return {
        "measured": meas,
        "per_layer_bytes": per,
        "full_depth": {"vision": 39, "qformer": 12, "encoder": 24, "decoder": 24},
        "extrapolated_peak_GiB": round(full / gib, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["speed", "memory", "device"], default="speed")
    ap.add_argument("--device", default="cpu", help="device of --part device (cuda; cpu: a dry run on the tiny models)")
    ap.add_argument("--batches", default="1,8", help="examples per batch (speed)")
    ap.add_argument("--new-tokens", type=int, default=3)
    ap.add_argument(
        "--families",
        default=None,
        help="memory: families measured (llava,blip2,instructblip,qwen_vl,qwen_vl_native; default llava,blip2); speed and "
        "device: model-name prefixes kept (e.g. qwen,llava; default all)",
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import platform

    t0 = time.time()
    only = args.families.split(",") if args.families else None
    if args.part == "speed":
        result = speed([int(b) for b in args.batches.split(",")], args.new_tokens, args.reps, only=only)
    elif args.part == "device":
        models = full_models(args.device) if args.device != "cpu" else None
        batches = [int(b) for b in args.batches.split(",")]
        result = speed(batches, args.new_tokens, args.reps, models, args.device, only=only)
        if args.device != "cpu":
            result["gpu"] = torch.cuda.get_device_name(0)
    out = Path(
        args.out or f"benchmarks/results/families_{args.part}{'_' + args.device if args.part == 'device' else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(result: dict, partial: bool = True) -> None:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
        meta.update(seconds=round(time.time() - t0, 1), partial=partial)
        out.write_text(json.dumps({**result, "meta": meta}, indent=1))

    if args.part == "memory":
        result = memory(args.new_tokens, (args.families or "llava,blip2").split(","), save)
    save(result, partial=False)
    print("->", out)


if __name__ == "__main__":
    main()
