"""Which explanation is faithful? Every attribution method on test questions with an embedded model.

easy-VQA with the demo model writes ``benchmarks/results/faithfulness_demo.json``: per method, the
metrics of docs/spec.md section 7 with 95% BCa intervals over examples (overall and per question type),
the model-randomisation sanity check on a subset, and each method's cost relative to ``attention``
measured side by side on the same batches.

The scenes testbed with the scenes model (``--dataset scenes``) writes
``benchmarks/results/faithfulness_scenes.json``: the same protocol columns beside the ground-truth
ones (mass accuracy, rank accuracy, pointing game, chance), for every method plus ``oracle``,
``random`` and the log p targets of the gradient methods, overall, per question type and per mask
kind; whether the protocol separates ``oracle`` from ``random`` (non-overlapping intervals); and the
Spearman correlation over methods between the protocol's ranking and the ground truth's.
``docs/faithfulness.md`` summarises both.

    python benchmarks/faithfulness_study.py --examples 500 --sanity 100
    python benchmarks/faithfulness_study.py --dataset scenes --examples 500 --sanity 0 --cost-examples 0
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
from stcg_model.attribution.sanity import randomised_copy, rank_correlations
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.loading import load_model
from stcg_model.statistics.metrics import bootstrap, summarise_methods


def _inputs(examples):
    return [VQAInput(e.example_id, e.load_image(), e.question, e.meta(), e.load_mask()) for e in examples]


def _ranking_agreement(overall: dict) -> dict:
    """Spearman over the non-reference methods: protocol rankings (deletion ratio, lower better;
    insertion ratio, higher better) against the ground truth's (mass accuracy, higher better)."""
    from scipy.stats import spearmanr

    names = [n for n in overall if n not in ("oracle", "random") and "mass_accuracy" in overall[n]]
    gt = [overall[n]["mass_accuracy"].value for n in names]
    out = {"methods": names}
    for metric, sign in (("deletion_ratio", -1), ("insertion_ratio", 1)):
        vals = [sign * overall[n][metric].value for n in names]
        out[metric] = float(spearmanr(vals, gt).statistic) if len(names) >= 3 else None
    return out


def _separation(overall: dict) -> dict:
    """Whether ``oracle`` beats ``random`` on deletion and insertion with non-overlapping intervals."""
    o, r = overall.get("oracle"), overall.get("random")
    if not o or not r:
        return {}
    return {
        "deletion_ratio": {
            "oracle": o["deletion_ratio"].as_dict(),
            "random": r["deletion_ratio"].as_dict(),
            "separated": bool(o["deletion_ratio"].high < r["deletion_ratio"].low),
        },
        "insertion_ratio": {
            "oracle": o["insertion_ratio"].as_dict(),
            "random": r["insertion_ratio"].as_dict(),
            "separated": bool(o["insertion_ratio"].low > r["insertion_ratio"].high),
        },
    }


def _table(est: dict) -> dict:
    return {m: {k: v.as_dict() for k, v in metrics.items()} for m, metrics in est.items()}


def method_costs(lm, inputs, names, batch_size: int, reps: int) -> dict:
    """Seconds per example of each method's maps on the same clean batches, interleaved repetitions."""
    from stcg_model.attribution.base import get_attribution
    from stcg_model.attribution.explain import ExampleRows, _batch

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
                eng.passes.prompt_ids(ex),
                eng.passes.question_positions(ex),
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
    ap.add_argument("--dataset", default="easy-vqa", choices=["easy-vqa", "scenes"])
    ap.add_argument("--model", default=None, help="checkpoint [default: the embedded model for the dataset]")
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--sanity", type=int, default=100, help="examples for the model-randomisation check")
    ap.add_argument("--cost-examples", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", default=None, help="[default: benchmarks/results/faithfulness_<demo|scenes>.json]")
    args = ap.parse_args()

    from stcg_model.attribution.base import parse_attributions
    from stcg_model.families.loading import default_model

    scenes = args.dataset == "scenes"
    out = Path(args.out or f"benchmarks/results/faithfulness_{'scenes' if scenes else 'demo'}.json")
    torch.manual_seed(0)
    lm = load_model(args.model or default_model(args.dataset), device="cpu")
    # scenes: every method, the two ground-truth references and the log p targets of the gradient methods
    names = parse_attributions("all", masks=scenes) + (["relevancy_logp", "gradcam_logp"] if scenes else [])
    examples = open_dataset(args.dataset, split="test", sample=args.examples, seed=0)
    inputs = _inputs(examples)
    t0 = time.time()
    ecfg = EngineConfig(attributions=",".join(names), masks=scenes)
    with STCGEngine.from_config(lm, ecfg) as eng:
        graphs = eng.explain(inputs, batch_size=args.batch_size)
    explain_s = time.time() - t0
    qtypes = [g.meta.get("question_type", "unknown") for g in graphs]
    overall = summarise_methods(graphs, n_boot=args.bootstrap)
    by_type = {}
    for qt in sorted(set(qtypes)):
        sub = [g for g, q in zip(graphs, qtypes) if q == qt]
        by_type[qt] = {"examples": len(sub), "methods": _table(summarise_methods(sub, n_boot=args.bootstrap))}
    by_mask_kind = {}
    kinds = [g.meta.get("mask_kind") for g in graphs]
    for mk in sorted({k for k in kinds if k}):
        sub = [g for g, k in zip(graphs, kinds) if k == mk]
        by_mask_kind[mk] = {"examples": len(sub), "methods": _table(summarise_methods(sub, n_boot=args.bootstrap))}
    accuracy = float(np.mean([g.answer == g.meta.get("gt_answer") for g in graphs]))

    # sanity check: the same methods on a copy with the language model and Q-Former re-initialised
    sanity_inputs = inputs[: args.sanity]
    sanity, rnd_graphs = {}, []
    if sanity_inputs:
        rnd = randomised_copy(lm, seed=0)
        rcfg = EngineConfig(attributions=",".join(names), masks=scenes, perturbations="gaussian_noise")
        with STCGEngine.from_config(rnd, rcfg) as eng:
            rnd_graphs = eng.explain(sanity_inputs, batch_size=args.batch_size)
    for n in names if sanity_inputs else []:
        rho = rank_correlations(
            [g.method(n).region for g in graphs[: args.sanity]], [g.method(n).region for g in rnd_graphs]
        )
        ok = rho[np.isfinite(rho)]
        est = bootstrap(lambda i, ok=ok: np.abs(ok[i]).mean(-1), len(ok), args.bootstrap, 0, vectorized=True)
        sanity[n] = {"mean_abs_spearman": est.as_dict(), "mean_spearman": float(ok.mean()) if len(ok) else None}

    costs = (
        method_costs(lm, inputs[: args.cost_examples], names, args.batch_size, args.reps) if args.cost_examples else {}
    )
    result = {
        "model": (
            "stcg_model/scenes_model (tiny BLIP-2, T5, trained on the scenes testbed)"
            if scenes
            else "stcg_model/demo_model (tiny BLIP-2, T5, trained on easy-VQA)"
        )
        if args.model is None
        else args.model,
        "dataset": f"{args.dataset} test, seeded sample (seed 0)",
        "examples": len(graphs),
        "exact_match": accuracy,
        "methods": names,
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
        },
        "explain_seconds_all_methods": round(explain_s, 1),
        "interval": "95% BCa bootstrap over examples (scipy.stats.bootstrap)",
        "overall": _table(overall),
        "by_question_type": by_type,
        "by_mask_kind": by_mask_kind,
        "oracle_vs_random": _separation(overall),
        "ranking_agreement_spearman": _ranking_agreement(overall) if scenes else {},
        "sanity_randomisation": {"examples": len(rnd_graphs), "methods": sanity},
        "cost_relative_to_attention": costs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for n in names:
        row = overall[n]
        cells = "  ".join(f"{k}={v.value:.3f}[{v.low:.3f},{v.high:.3f}]" for k, v in row.items())
        extra = f"  sanity|rho|={sanity[n]['mean_abs_spearman']['value']:.3f}" if n in sanity else ""
        extra += f"  cost x{costs[n]['relative_to_attention']:.1f}" if n in costs else ""
        print(f"{n:<14} {cells}{extra}")
    print(
        json.dumps({"oracle_vs_random": result["oracle_vs_random"], "agreement": result["ranking_agreement_spearman"]})
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
