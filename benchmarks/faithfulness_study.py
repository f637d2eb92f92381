"""Which explanation is faithful? Every attribution method on easy-VQA test questions with the demo model.

Writes ``benchmarks/results/faithfulness_demo.json``: per method, the metrics of STCG_SPEC section 7
with 95% BCa intervals over examples (overall and per question type), the model-randomisation
sanity check on a subset, and each method's cost relative to ``attention`` measured side by side
on the same batches. ``docs/faithfulness.md`` summarises it.

    python benchmarks/faithfulness_study.py --examples 500 --sanity 100
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from stcg.datasets import open_dataset
from stcg_model.attribution.base import attribution_names
from stcg_model.attribution.sanity import randomised_copy, rank_correlations
from stcg_model.config import EngineConfig
from stcg_model.engine import STCGEngine, VQAInput
from stcg_model.loading import load_model
from stcg_model.metrics import bootstrap, summarise_methods


def _inputs(examples):
    return [VQAInput(e.example_id, e.load_image(), e.question, e.meta()) for e in examples]


def _table(est: dict) -> dict:
    return {m: {k: v.as_dict() for k, v in metrics.items()} for m, metrics in est.items()}


def method_costs(lm, inputs, names, batch_size: int, reps: int) -> dict:
    """Seconds per example of each method's maps on the same clean batches, interleaved repetitions."""
    from stcg_model.attribution.base import get_attribution
    from stcg_model.attribution.explain import ExampleRows, _batch
    from stcg_model.inputs import prompt_ids, question_positions

    eng = STCGEngine.from_config(lm, EngineConfig(perturbations="gaussian_noise", deletion_steps=0))
    batches = []
    for s in range(0, len(inputs), batch_size):
        chunk = inputs[s : s + batch_size]
        host = eng.prepare_batch(chunk)
        res = eng.passes.run_pass(host.rows, answers=None, per_example=2, pv=host.pixel_values)
        answers = [eng.passes.trim_answer(res.greedy[i * 2]) for i in range(len(chunk))]
        rows = [
            ExampleRows(
                ex.ex.example_id,
                ex.pixels,
                ex.grid,
                prompt_ids(ex, eng.Q, eng.image_token_id),
                question_positions(ex, eng.Q),
                a,
                np.array([t == eng.eos_id for t in a]),
                [],
            )
            for ex, a in zip(host.prepared, answers)
        ]
        batches.append(_batch(rows, [r.image for r in rows], eng._pixel_values, eng.fill))
    seconds = {n: [] for n in names}
    for _ in range(reps):
        for n in names:
            m = get_attribution(n)
            t = time.perf_counter()
            for b in batches:
                m.compute(lm, b)
            seconds[n].append(time.perf_counter() - t)
    eng.close()
    med = {n: float(np.median(v)) for n, v in seconds.items()}
    return {
        n: {"seconds_per_example": med[n] / len(inputs), "relative_to_attention": med[n] / med["attention"]}
        for n in names
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--sanity", type=int, default=100, help="examples for the model-randomisation check")
    ap.add_argument("--cost-examples", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/faithfulness_demo.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    lm = load_model(None, device="cpu")
    names = attribution_names()
    examples = open_dataset("easy-vqa", split="test", sample=args.examples, seed=0)
    inputs = _inputs(examples)
    t0 = time.time()
    with STCGEngine.from_config(lm, EngineConfig(attributions="all")) as eng:
        graphs = eng.explain(inputs, batch_size=args.batch_size)
    explain_s = time.time() - t0
    qtypes = [g.meta.get("question_type", "unknown") for g in graphs]
    overall = summarise_methods(graphs, n_boot=args.bootstrap)
    by_type = {}
    for qt in sorted(set(qtypes)):
        sub = [g for g, q in zip(graphs, qtypes) if q == qt]
        by_type[qt] = {"examples": len(sub), "methods": _table(summarise_methods(sub, n_boot=args.bootstrap))}

    # sanity check: the same methods on a copy with the language model and Q-Former re-initialised
    sanity_inputs = inputs[: args.sanity]
    rnd = randomised_copy(lm, seed=0)
    with STCGEngine.from_config(rnd, EngineConfig(attributions="all", perturbations="gaussian_noise")) as eng:
        rnd_graphs = eng.explain(sanity_inputs, batch_size=args.batch_size)
    sanity = {}
    for n in names:
        rho = rank_correlations(
            [g.method(n).region for g in graphs[: args.sanity]], [g.method(n).region for g in rnd_graphs]
        )
        ok = rho[np.isfinite(rho)]
        est = bootstrap(lambda i, ok=ok: np.abs(ok[i]).mean(-1), len(ok), args.bootstrap, 0, vectorized=True)
        sanity[n] = {"mean_abs_spearman": est.as_dict(), "mean_spearman": float(ok.mean()) if len(ok) else None}

    costs = method_costs(lm, inputs[: args.cost_examples], names, args.batch_size, args.reps)
    result = {
        "model": "stcg_model/demo_model (tiny BLIP-2, T5, trained on easy-VQA)",
        "dataset": "easy-vqa test, seeded sample (seed 0)",
        "examples": len(graphs),
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
        },
        "explain_seconds_all_methods": round(explain_s, 1),
        "interval": "95% BCa bootstrap over examples (scipy.stats.bootstrap)",
        "overall": _table(overall),
        "by_question_type": by_type,
        "sanity_randomisation": {"examples": len(rnd_graphs), "methods": sanity},
        "cost_relative_to_attention": costs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for n in names:
        row = overall[n]
        cells = "  ".join(f"{k}={v.value:.3f}[{v.low:.3f},{v.high:.3f}]" for k, v in row.items())
        print(
            f"{n:<10} {cells}  sanity|rho|={sanity[n]['mean_abs_spearman']['value']:.3f}  cost x{costs[n]['relative_to_attention']:.1f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
