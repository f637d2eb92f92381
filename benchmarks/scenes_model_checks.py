"""The scenes model's bars (issue 23, item 2): accuracy on the scenes test split and the causal edit check.

    python benchmarks/scenes_model_checks.py [--model stcg_model/scenes_model] [--limit 2000]

1. exact match, overall, per question type and per question family, on the test split (2,000);
2. the causal edit check on every attribute question of it (``stcg_model.training.scenes_checks``): the answer
   follows an edit of the target object (bar >= 90 %) and ignores an edit of a distractor (<= 5 %);
   and the same check on every relation question (the two named objects swap shapes; a distractor is
   recoloured), against the same bars.
Writes benchmarks/results/scenes_model.json and prints the tables (``stcg eval --dataset scenes``
prints the same).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stcg.datasets import open_dataset
from stcg_model.engine.evaluation import accuracy_table, evaluate
from stcg_model.families.loading import default_model, load_model
from stcg_model.training.scenes_checks import causal_check, causal_summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/scenes_model.json")
    args = ap.parse_args()
    lm = load_model(args.model or default_model("scenes"), device="cpu")
    test = open_dataset("scenes", split="test", limit=args.limit)
    t = time.time()
    df = evaluate(lm, test, batch_size=256)
    df["family"] = [e.extra["scene"]["family"] for e in test]
    table = accuracy_table(df)
    by_family = (100 * df.groupby("family")["exact_match"].mean()).round(2).to_dict()
    print(table.to_string())
    print("exact match by family (%):", by_family)
    cdf = causal_check(lm, test, batch_size=256)
    s = causal_summary(cdf)
    rel = causal_summary(cdf, "relation")
    for c in (s, rel):
        print(
            f"causal edit check, {c['questions']} {c['family']} questions: follows target edits "
            f"{c['follow_rate']:.1%} (bar >= 90%), changes with distractor edits {c['change_rate']:.1%} of "
            f"{c['distractor_edits']} (bar <= 5%)"
        )
    overall = float(df["exact_match"].mean())
    result = {
        "model": lm.name,
        "questions": len(df),
        "exact_match": overall,
        "exact_match_bar": 0.95,
        "accuracy_table": json.loads(table.to_json(orient="index")),
        "exact_match_by_family_pct": by_family,
        "causal_check": s,
        "causal_check_relation": rel,
        "meets_bars": bool(overall >= 0.95 and s["passes"]),
        "seconds": round(time.time() - t, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
