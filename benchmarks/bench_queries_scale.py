"""p50 latency of every public query template on runs of 10k, 50k (and 200k) synthetic STCGs, loaded
through the bulk path (``--sink csv`` files + ``neo4j-admin database import``), on a server of its own.

    python benchmarks/bench_queries_scale.py [--sizes 10000,50000,200000] [--unique 5000] [--reps 5]

How the runs are made. ``--unique`` synthetic STCGs of the demo model's shape
(``stcg_model.testing.synthetic.synthetic_graph``: 8 x 8 regions, about 7 question tokens, 2 answer steps, six
perturbations, top-k 5) are written once by the real ``ingest.sinks.csv_files.CsvSink``; a run of N examples is
that folder's batches copied N / unique times with the example ids renamed (``zq000123`` becomes
``zq07-000123`` in every uid, id and manifest), so generating 200k examples costs a file copy, not
200k model-shaped graphs. Every copy is a distinct example with distinct nodes; the values repeat,
which changes no template's cost (they scan and aggregate, none is value-selective beyond the
question-type prefix and the perturbation kind, whose mixes the copies keep). Each size is imported
into a fresh database with ``ingest.bulk.load_csv`` (counts checked), then every public template runs
once to warm up and ``--reps`` times timed through ``QueryLibrary.run`` (Bolt and DataFrame included);
the p50 is reported. Writes ``benchmarks/results/queries_scale.json``.

``--grounding`` gives every synthetic example the explanations of ``GROUNDING_METHODS`` (random maps) and a
random ground-truth mask with every method's ground-truth scores, as a run ingested with ``--attributions``
on the scenes testbed has, so the method templates (``method_grounding``, ``method_faithfulness``,
``method_agreement``) time real work instead of an empty match; it writes
``benchmarks/results/queries_scale_grounding.json`` (the default run stays comparable with earlier results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_queries import params_for  # noqa: E402

from ingest.bulk import CsvFolder, load_csv  # noqa: E402
from ingest.rows import GraphRows, graph_rows  # noqa: E402
from ingest.sinks.csv_files import CsvSink  # noqa: E402
from ingest.stats import drop_run_stats  # noqa: E402
from ingest.writer import Neo4jWriter  # noqa: E402
from queries.library import QueryLibrary, template_names  # noqa: E402
from stcg.config import Neo4jSettings  # noqa: E402
from stcg.db import connect  # noqa: E402
from stcg.neo4j_runtime import LocalNeo4j  # noqa: E402
from stcg_model.testing.synthetic import synthetic_graph  # noqa: E402

RUN = "bench-scale"
MARK = "zq"  # example ids zq000000.. : the one string the copies rename
GROUNDING_METHODS = ("rollout", "occlusion", "oracle", "random")
MASK_KINDS = ("single", "union", "all")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grounded(i: int, rng: np.random.Generator):
    """Synthetic example ``i`` with ``GROUNDING_METHODS``' explanations, a random mask of 4-16 regions (its
    shares in (0, 1]), a mask kind, and every method's ground-truth scores (``--grounding``)."""
    from stcg_model.testing.synthetic import add_ground_truth

    g = synthetic_graph(f"{MARK}{i:06d}", rng, methods=GROUNDING_METHODS)
    return add_ground_truth(g, rng, MASK_KINDS[i % len(MASK_KINDS)])


def write_unique(folder: Path, n: int, batch: int = 64, grounding: bool = False) -> float:
    sink = CsvSink(folder)
    sink.prepare()
    sink.claim_run(RUN, "bench", str(folder / "store"), {"name": RUN, "n_total": n, "top_k": 5})
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for s in range(0, n, batch):
        rows = GraphRows()
        for i in range(s, min(n, s + batch)):
            g = grounded(i, rng) if grounding else synthetic_graph(f"{MARK}{i:06d}", rng)
            rows.extend(graph_rows(g, RUN, 5))
        sink.write(rows)
    sink.finish(RUN, finished=True)
    return time.perf_counter() - t


def replicate(base: Path, out: Path, copies: int, total: int) -> None:
    """``out`` = ``base`` with its batches copied ``copies`` times, example ids renamed per copy."""
    shutil.copytree(base / "headers", out / "headers")
    shutil.copytree(base / "runs", out / "runs")
    folder = CsvFolder(out)
    for f in (out / "runs").rglob("run.json"):  # the run's counts cover every copy (run.json and Run.csv)
        run = json.loads(f.read_text())
        run.update({k: total for k in ("n_total", "n_selected", "n_complete") if k in run})
        with folder.lock():
            folder.write_run(run)
    parts = sorted(p for p in (base / "parts").iterdir() if p.is_dir())
    (out / "parts").mkdir()
    for c in range(copies):
        for p in parts:
            dst = out / "parts" / f"{p.name}{c:03d}"  # a longer counter: still a name CsvSink writes
            dst.mkdir()
            for f in p.iterdir():
                text = f.read_text()
                (dst / f.name).write_text(text if c == 0 else text.replace(MARK, f"{MARK}{c:02d}-"))


def time_templates(lib: QueryLibrary, reps: int) -> dict:
    out = {}
    for name in template_names():
        p = params_for(name, RUN)
        if "example_id" in p:
            p["example_id"] = f"{MARK}000007"
        lib.run(name, **p)  # warm the plan cache and the page cache
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            lib.run(name, **p)
            ts.append(time.perf_counter() - t)
        out[name] = round(statistics.median(ts), 4)
        print(f"  {name:<32}{out[name] * 1000:9.1f} ms", flush=True)
    return out


def markdown(path: str) -> str:
    """The docs table of a results file: every template's p50 (ms) per size, and its growth."""
    d = json.loads(Path(path).read_text())
    sizes = sorted(d["sizes"], key=int)
    last = d["sizes"][sizes[-1]]
    scan = last.get("p50_seconds_without_stats", {})
    head = (
        "| template | "
        + " | ".join(f"{int(n):,} examples (ms)" for n in sizes)
        + " | growth, last / first |"
        + (f" {int(sizes[-1]):,} without statistics (ms) |" if scan else "")
    )
    lines = [head, "|---" * (len(sizes) + 2 + bool(scan)) + "|"]

    def ms(x):
        return "-" if x is None else (f"**{x * 1000:,.0f}**" if x >= 1 else f"{x * 1000:,.0f}")

    for name in sorted(last["p50_seconds"], key=lambda k: -last["p50_seconds"][k]):
        v = [d["sizes"][n]["p50_seconds"].get(name) for n in sizes]
        growth = f"{v[-1] / v[0]:.1f}x" if v[0] and v[-1] else "-"
        lines.append(
            f"| `{name}` | {' | '.join(ms(x) for x in v)} | {growth} |" + (f" {ms(scan.get(name))} |" if scan else "")
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,200000")
    ap.add_argument("--unique", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--heap", default="2g")
    ap.add_argument("--pagecache", default="4g")
    ap.add_argument("--out", default=None, help="results file [default: results/queries_scale.json, "
                    "results/queries_scale_grounding.json with --grounding]")  # fmt: skip
    ap.add_argument("--grounding", action="store_true", help="examples with explanations and ground-truth masks")
    ap.add_argument("--markdown", action="store_true", help="only print the docs table of --out")
    args = ap.parse_args()
    if args.out is None:
        name = "queries_scale_grounding.json" if args.grounding else "queries_scale.json"
        args.out = str(ROOT / "benchmarks/results" / name)
    if args.markdown:
        print(markdown(args.out))
        return
    tmp = Path(tempfile.mkdtemp(prefix="stcg-bench-scale-"))
    result = {
        "unique_examples": args.unique,
        "server": {"heap": args.heap, "pagecache": args.pagecache},
        "cpu_threads": os.cpu_count(),
        **(
            {"grounding": {"methods": ["attention", *GROUNDING_METHODS], "mask_kinds": MASK_KINDS}}
            if args.grounding
            else {}
        ),
        "sizes": {},
    }
    if Path(args.out).is_file():  # sizes measured by an earlier call (e.g. 200k on its own) are kept
        result["sizes"] = json.loads(Path(args.out).read_text()).get("sizes", {})
    try:
        base = tmp / "base"
        result["unique_csv_seconds"] = round(write_unique(base, args.unique, grounding=args.grounding), 1)
        print("unique examples written in", result["unique_csv_seconds"], "s", flush=True)
        for n in map(int, args.sizes.split(",")):
            copies = max(1, n // args.unique)
            folder = tmp / f"csv-{n}"
            t = time.perf_counter()
            replicate(base, folder, copies, copies * args.unique)
            rep_s = time.perf_counter() - t
            server = LocalNeo4j(
                home=tmp / f"neo4j-{n}",
                bolt_port=_free_port(),
                http_port=_free_port(),
                heap=args.heap,
                pagecache=args.pagecache,
            )
            try:
                loaded = load_csv(folder, server, log=lambda s: print("  ", s, flush=True))
                store_bytes = sum(f.stat().st_size for f in (tmp / f"neo4j-{n}" / "data").rglob("*") if f.is_file())
                print(f"{copies * args.unique} examples: {loaded['relationships']} relationships", flush=True)
                settings = Neo4jSettings(uri=server.bolt_uri, password=server.password)
                load_before = [round(x, 2) for x in os.getloadavg()]
                with connect(settings) as driver:  # notifications off, as every stcg command
                    writer = Neo4jWriter(driver)
                    stats_nodes = writer.run_query("MATCH (:Run)-[:HAS_STATS]->(x:Stats) RETURN count(x) AS n")[0]["n"]
                    print(f"  with the run's statistics ({stats_nodes} Stats nodes):", flush=True)
                    lat = time_templates(QueryLibrary(driver), args.reps)
                    # the same templates on the same run without them: what a partial run (or one
                    # loaded before statistics existed) costs, side by side
                    scan = {}
                    if n == max(map(int, args.sizes.split(","))):  # at the largest size only: minutes
                        drop_run_stats(writer, RUN)
                        print("  without (computed from the graph):", flush=True)
                        scan = time_templates(QueryLibrary(driver), args.reps)
                load_after = [round(x, 2) for x in os.getloadavg()]
                result["sizes"][str(copies * args.unique)] = {
                    "nodes": loaded["nodes"],
                    "relationships": loaded["relationships"],
                    "csv_bytes": sum(f.stat().st_size for f in folder.rglob("*.csv")),
                    "replicate_seconds": round(rep_s, 1),
                    "import_seconds": round(loaded["import_seconds"], 1),
                    "load_seconds": round(loaded["seconds"], 1),
                    "stats_seconds": round(loaded["stats_seconds"], 1),
                    "stats_nodes": stats_nodes,
                    "store_bytes": store_bytes,
                    "load_average_before_after": [load_before, load_after],
                    "p50_seconds": lat,
                    "slowest": max(lat, key=lat.get),
                    **({"p50_seconds_without_stats": scan} if scan else {}),
                }
            finally:
                server.stop(log=lambda s: None)
                shutil.rmtree(tmp / f"neo4j-{n}", ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
            Path(args.out).write_text(json.dumps(result, indent=1))  # after every size: nothing lost
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
