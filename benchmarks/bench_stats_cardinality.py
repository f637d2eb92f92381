"""p50 of the templates that read a run's statistics, with statistics of VQA-v2's cardinality.

    python benchmarks/bench_stats_cardinality.py [--words 15000] [--question-types 65] [--values 1300000]

``bench_queries_scale.py`` times the templates on synthetic runs whose STCGs have 3 question types and
12 distinct words, so their statistics are a few hundred nodes. Read from statistics, a template's
cost depends on how many statistics nodes it reads, not on the run's examples, so this benchmark
writes ``Stats`` nodes of the shapes ``stcg.statistics`` writes, in the numbers VQA-v2 val would give
(65 question types x 3 answer types, six perturbations, 64 regions, a vocabulary of 15,000 question
words, 1.3 M |dW|_F values in 4,096-value chunks, five attribution methods), on a Run with no examples,
into the local server (``stcg neo4j start``), and times every template that reads them (p50 of 5,
warm). Random values: the timings, not the answers, are the point. Writes
``benchmarks/results/stats_cardinality.json``; the run is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.schema import ensure_schema  # noqa: E402
from queries.library import QueryLibrary  # noqa: E402
from stcg.db import connect  # noqa: E402

RUN = "bench-stats-cardinality"
KINDS = ["center_mask", "color_shift", "gaussian_noise", "patch_shuffle", "peripheral_mask", "saliency_patch_mask"]
METHODS = ["attention", "rollout", "relevancy", "gradcam", "occlusion"]
TEMPLATES = {
    "perturbation_summary": {},
    "claim_spatial_dw": {},
    "claim_dissociation": {},
    "claim_colour_dp": {},
    "compare_runs": None,
    "faithfulness_by_question_type": {},
    "question_type_regions": {"question_type": "what"},
    "wrong_answer_regions": {},
    "dissociation": {},
    "token_localisation": {"group_by": "word"},
    "temporal_drift": {},
    "claim_causal_faithfulness": {"method": "relevancy"},
    "claim_content_function": {"method": "relevancy"},
}


def stats_rows(words: int, qtypes: int, values: int, width: int = 4096, seed: int = 0) -> list[dict]:
    """Property maps of every Stats node (uid, of and run_id set), shaped as ``stcg.statistics`` writes them."""
    rng = np.random.default_rng(seed)
    qts = [f"qt{i:02d} what" if i % 3 else f"qt{i:02d} what color" for i in range(qtypes)]
    rows: list[dict] = [{"of": "run", "examples": values // len(KINDS)}]
    for k in KINDS:
        for q in qts:
            n = int(rng.integers(100, 1000))
            rows.append(
                {
                    "of": "perturbations", "kind": k, "question_type": q, "n": n, "flips": int(n * 0.1),
                    "n_dW": n, "sum_dW": n * 0.5, "sumsq_dW": n * 0.3, "n_dp": n, "sum_dp": -n * 0.01,
                    "n_abs_dp": n, "sum_abs_dp": n * 0.05, "sumsq_abs_dp": n * 0.01, "sum_dW_abs_dp": n * 0.02,
                }
            )  # fmt: skip
            rows.append(
                {
                    "of": "regions", "kind": k, "question_type": q, "row": [p // 8 for p in range(64)],
                    "col": [p % 8 for p in range(64)], "abs_dW": rng.random(64).tolist(),
                    "examples": rng.integers(1, 100, 64).tolist(),
                }
            )  # fmt: skip
    for q in qts:
        for a in ("yes/no", "number", "other"):
            for c in (True, False):
                rows.append(
                    {
                        "of": "examples", "question_type": q, "answer_type": a, "correct": c, "grid": 8,
                        "examples": 100, "sum_deletion_auc": 30.0, "sum_deletion_auc_random": 40.0,
                        "n_jaccard": 100, "sum_jaccard": 25.0,
                    }
                )  # fmt: skip
            rows.append(
                {
                    "of": "transitions", "question_type": q, "answer_type": a, "examples_all": 200,
                    "examples_inner": 150, "transitions_all": 300, "transitions_inner": 150, "sum_js_all": 90.0,
                    "sum_js_inner": 40.0, "n_js_all": 300, "n_js_inner": 150, "max_js_all": 0.9, "max_js_inner": 0.8,
                    "sum_visual_mass_all": 150.0, "sum_visual_mass_inner": 70.0, "n_visual_mass_all": 300,
                    "n_visual_mass_inner": 150,
                }
            )  # fmt: skip
    for c in (True, False):
        rows.append(
            {
                "of": "attribution",
                "correct": c,
                "grid": 8,
                "n_attribution": 1000,
                "attribution_sum": rng.random(64).tolist(),
            }
        )
    for i in range(words):
        n = int(rng.integers(1, 500))
        rows.append(
            {
                "of": "tokens", "kind": "content" if i % 4 else "function", "word": f"w{i:05d}", "tokens": n,
                "sum_entropy": n * 4.0, "n_entropy": n, "sum_top_k_mass": n * 0.3, "n_top_k_mass": n,
                "sum_spread": n * 2.0, "n_spread": n, "sum_visual_mass": n * 0.2, "n_visual_mass": n,
            }
        )  # fmt: skip
    for m in METHODS:
        rows.append({"of": "causal", "method": m, "examples": 1000, "pairs": 6000, "pearson": 0.1, "spearman": 0.1})
        rows.append({"of": "content", "method": m, "examples": 1000, **{f: 0.1 for f in CONTENT}})
    xs = np.sort(rng.random(values))
    codes = rng.integers(0, 3 * len(KINDS), values)
    chunks = (values + width - 1) // width
    before = np.zeros(3 * len(KINDS), dtype=np.int64)
    for c in range(chunks + 1):
        part = slice(c * width, (c + 1) * width)
        row = {"of": "dW", "chunk": c, "width": width, "n_values": values, "kinds": KINDS, "before": before.tolist()}
        if c < chunks:
            row.update(
                first=float(xs[part][0]), values=xs[part].tolist(), kind=(codes[part] // 3).tolist(),
                changed=(codes[part] % 3).tolist(),
            )  # fmt: skip
            before = before + np.bincount(codes[part], minlength=3 * len(KINDS))
        rows.append(row)
    for i, r in enumerate(rows):
        r.update(uid=f"{RUN}/stats/{r['of']}/{i}", run_id=RUN)
    return rows


CONTENT = (
    "diff_entropy_bits", "diff_top_k_mass", "diff_spread_patches", "content_entropy_bits", "function_entropy_bits",
    "content_top_k_mass", "function_top_k_mass", "content_spread_patches", "function_spread_patches",
)  # fmt: skip


def _drop(driver) -> None:
    """The benchmark's run and its statistics (CALL IN TRANSACTIONS needs an auto-commit query)."""
    with driver.session() as s:
        s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 2000 ROWS", r=RUN).consume()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=15000)
    ap.add_argument("--question-types", type=int, default=65)
    ap.add_argument("--values", type=int, default=1_300_000, help="|dW|_F values: examples x perturbations")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/stats_cardinality.json"))
    args = ap.parse_args()
    rows = stats_rows(args.words, args.question_types, args.values)
    with connect() as driver:
        ensure_schema(driver)
        _drop(driver)
        try:
            driver.execute_query("CREATE (:Run {uid: $r, run_id: $r, name: $r, status: 'complete', top_k: 5})", r=RUN)
            for s in range(0, len(rows), 500):
                driver.execute_query(
                    "MATCH (r:Run {uid: $r}) UNWIND $rows AS row CREATE (r)-[:HAS_STATS]->(x:Stats) SET x = row",
                    r=RUN,
                    rows=rows[s : s + 500],
                )
            lib = QueryLibrary(driver)
            out = {}
            for name, params in TEMPLATES.items():
                p = {"run_a": RUN, "run_b": RUN} if params is None else {"run_id": RUN, **params}
                lib.run(name, **p)
                ts = []
                for _ in range(args.reps):
                    t = time.perf_counter()
                    lib.run(name, **p)
                    ts.append(time.perf_counter() - t)
                out[name] = round(statistics.median(ts), 4)
                print(f"  {name:<32}{out[name] * 1000:9.1f} ms", flush=True)
        finally:
            _drop(driver)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["of"]] = counts.get(r["of"], 0) + 1
    result = {"stats_nodes": counts, "args": vars(args), "p50_seconds": out}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out, counts)


if __name__ == "__main__":
    main()
