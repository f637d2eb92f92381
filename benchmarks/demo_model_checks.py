"""The demo model's bars: accuracy on the full easy-VQA test split, and whether it uses the image.

    python benchmarks/demo_model_checks.py [--model stcg_model/demo_model]
1. exact-match accuracy, overall and per question type, on all 9,673 test questions;
2. on the "what color" test questions: how often color_shift changes the answer (should be most)
   and how often gaussian_noise does (should be few), with the STCG engine (clean answer vs
   perturbed greedy answer, VQA-normalised).
Writes benchmarks/results/demo_model.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stcg.datasets import open_dataset
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.evaluation import accuracy_table, evaluate
from stcg_model.families.loading import load_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="benchmarks/results/demo_model.json")
    args = ap.parse_args()
    lm = load_model(args.model, device="cpu")
    test = open_dataset("easy-vqa", split="test")
    t = time.time()
    df = evaluate(lm, test, batch_size=256)
    table = accuracy_table(df)
    print(table.to_string())
    colour = [e for e in test if e.question_type == "what color"]
    engine = STCGEngine(lm, "color_shift,gaussian_noise", deletion_steps=0)
    graphs = engine.explain(
        [VQAInput(e.example_id, e.load_image(), e.question, e.meta()) for e in colour], batch_size=64
    )
    cs = sum(bool(g.answer_changed[0]) for g in graphs) / len(graphs)
    gn = sum(bool(g.answer_changed[1]) for g in graphs) / len(graphs)
    print(
        f"what color questions: {len(graphs)}; color_shift changes the answer for {cs:.1%}, gaussian_noise for {gn:.1%}"
    )
    result = {
        "model": lm.name,
        "accuracy_table": json.loads(table.to_json(orient="index")),
        "colour_questions": len(graphs),
        "color_shift_change_rate": round(cs, 4),
        "gaussian_noise_change_rate": round(gn, 4),
        "seconds": round(time.time() - t, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
