"""``stcg report``: one self-contained HTML file (works offline) summarising a run.

Sections: the study's claims tested on the run (verdicts with intervals, first), per-perturbation
table and a |dW| vs flip-rate plot, token-type localisation, temporal drift by question type, the
metrics with bootstrap intervals, the attribution methods (overall and per question type, for runs
ingested with --attributions; with ground-truth masks also the mass / rank accuracy and pointing game
against chance, per mask kind, and the mask outlined on the heatmaps), and example heatmaps on their images.
Every number comes from the query library or the run's file store; plotly.js is embedded once.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from queries.library import QueryLibrary
from queries.report_images import Figures, example_figures, example_image, outline_mask, png_data_uri

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .meta{color:#666;font-size:.85rem}
.examples{display:flex;flex-wrap:wrap;gap:1rem} figure{margin:0;width:250px} figure img{width:250px;image-rendering:pixelated}
figcaption{font-size:.8rem;color:#444} code{background:#f4f4f4;padding:0 .2rem}
table.claims td,table.claims th{text-align:left;vertical-align:top} table.claims td.numbers{font-size:.75rem}
table.claims td.why{font-size:.8rem;max-width:22rem} table.claims td.study{max-width:12rem}
td.verdict.supported{background:#e3f4e3} td.verdict.not-supported{background:#fbe3e3} td.verdict.not-testable{background:#eee}
"""


def _table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    if df is None or df.empty:
        return "<p class='meta'>(no rows)</p>"
    fmt = {c: (lambda v, f=floatfmt: "" if pd.isna(v) else f.format(v)) for c in df.columns if df[c].dtype.kind == "f"}
    return df.to_html(index=False, escape=True, formatters=fmt, border=0)


def _methods_section(graphs, figs: Figures, n_boot: int, examples: int, question_types=None) -> str:
    """ "Which explanation is faithful?": every attribution method the run holds (ingested with
    --attributions), ranked by the same protocol, with intervals, then the same table per question
    type (``metrics_table(by_method=True)``, as ``stcg metrics --by-method``), and each example's maps
    side by side."""
    import plotly.graph_objects as go

    from queries.metrics import GROUNDING_METRICS, MASK_GROUP, interval_label, metrics_table
    from stcg_model.plots import methods_panel

    qtypes = list(question_types) if question_types is not None else [None] * len(graphs)
    masked = sum(g.gt is not None for g in graphs)
    every = metrics_table(
        graphs,
        qtypes,
        n_boot=n_boot,
        by_question_type=question_types is not None,
        by_method=True,
        by_mask_kind=masked > 0,
    )
    table = every[every.group == "all"]
    truth = bool(set(GROUNDING_METRICS) & set(every["metric"]))
    out = [
        "<h2>Which explanation is faithful?</h2>",
        "<p>Each attribution method's region ranking, tested by what removing (deletion) or revealing "
        "(insertion) its top regions does to p(answer), against a random order: deletion ratio &lt; 1 and "
        "insertion ratio &gt; 1 are better; comprehensiveness high, sufficiency low; causal faithfulness and "
        f"stability under the method. {html.escape(interval_label(n_boot))}. See docs/attribution.md.</p>",
    ]
    if truth:
        out.append(
            f"<p class='ground-truth'>Ground truth ({masked} examples with a mask of the evidence, docs/spec.md section 7, "
            "docs/scenes.md): <b>mass accuracy</b> is the share of the attribution inside the mask, <b>rank "
            "accuracy</b> the share of the top-K regions inside it (K = the mask's regions), <b>pointing game</b> "
            "the rate at which the top region is inside it; <b>chance</b> is each one's chance level K/P (a uniform "
            "map). Higher is better; <code>oracle</code> (the mask itself) and <code>random</code> bracket every "
            "method. On the heatmaps below, the mask's regions are outlined in cyan.</p>"
        )

    def cell(r) -> str:
        lo, hi = r["ci_low"], r["ci_high"]
        return f"{r['value']:.3f}" + ("" if pd.isna(lo) else f" [{lo:.3f}, {hi:.3f}]")

    shown = {
        "deletion_ratio": "deletion ratio",
        "insertion_ratio": "insertion ratio",
        "comprehensiveness": "comprehensiveness",
        "sufficiency": "sufficiency",
        "causal_faithfulness_pearson": "causal faithfulness (Pearson)",
        "jaccard_stability": "Jaccard stability",
    }
    if truth:  # beside the protocol's columns
        shown.update(
            {
                "mass_accuracy": "mass accuracy",
                "rank_accuracy": "rank accuracy",
                "pointing_game": "pointing game",
                "chance": "chance (K/P)",
            }
        )

    def ranked(sub: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for method, part in sub.groupby("method", sort=False):
            by = {r["metric"]: cell(r) for _, r in part.iterrows()}
            rows.append({"method": method, **{label: by.get(key, "n/a") for key, label in shown.items()}})
        return pd.DataFrame(rows)

    out.append(_table(ranked(table)))
    fig = go.Figure()
    for metric in ("deletion_ratio", "insertion_ratio"):
        m = table[table.metric == metric].dropna(subset=["value"])
        fig.add_trace(
            go.Scatter(
                x=m["value"],
                y=m["method"],
                mode="markers",
                name=metric,
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": m["ci_high"] - m["value"],
                    "arrayminus": m["value"] - m["ci_low"],
                },
            )
        )
    fig.add_vline(x=1.0, line_dash="dot")
    fig.update_layout(title="deletion and insertion ratios to a random order (95% BCa)", height=340)
    out.append(figs.html(fig))
    groups = [g for g in every["group"].unique() if g != "all" and not str(g).startswith(MASK_GROUP)]
    if groups:
        out.append(
            "<h3>Per question type</h3><p class='meta'>The same metrics on each question type's examples "
            "(intervals over that type's examples; none below 3 examples).</p>"
        )
        for grp in groups:
            sub = every[every.group == grp]
            n = int(sub["examples"].max()) if len(sub) else 0
            out.append(f"<h4 class='qtype'>{html.escape(str(grp))} ({n} examples)</h4>" + _table(ranked(sub)))
    kinds = [g for g in every["group"].unique() if str(g).startswith(MASK_GROUP)]
    if kinds:
        out.append(
            "<h3>Per mask kind</h3><p class='meta'>The same metrics on the examples whose evidence is one object "
            "(<code>single</code>), several (<code>union</code>) or every object (<code>all</code>: a count of none, "
            "an absent object), intervals over those examples.</p>"
        )
        for grp in kinds:
            sub = every[every.group == grp]
            n = int(sub["examples"].max()) if len(sub) else 0
            name = str(grp)[len(MASK_GROUP) :]
            out.append(f"<h4 class='mask-kind'>{html.escape(name)} ({n} examples)</h4>" + _table(ranked(sub)))
    pictures = []
    for g in [g for g in graphs if g.methods][:examples]:
        try:
            image = example_image(g)
        except Exception:
            continue
        cap = html.escape(
            f"{g.question} -> {g.answer}" + (f" (mask: {(g.meta or {}).get('mask_kind')})" if g.gt is not None else "")
        )
        panel = png_data_uri(outline_mask(methods_panel(g, image), g, 1 + len(g.method_names)))
        pictures.append(
            f"<div><img style='max-width:100%;image-rendering:pixelated' alt='{cap}' src='{panel}'>"
            f"<p class='meta'>{cap}</p></div>"
        )
    out.append("".join(pictures) or "<p class='meta'>(no example images available)</p>")
    return "".join(out)


def _numbers_html(v) -> str:
    lines = []
    for m in v.measures:
        e = m.estimate
        val = (
            "n/a"
            if pd.isna(e.value)
            else f"{e.value:.3f}" + ("" if pd.isna(e.low) else f" [{e.low:.3f}, {e.high:.3f}]")
        )
        detail = f" · {m.detail}" if m.detail else ""
        lines.append(html.escape(f"{m.name} ({m.group}): {val}, n={e.n}{detail}"))
    return "<br>".join(lines)


def _claims_table(verdicts, with_method: bool) -> str:
    head = [
        "claim",
        *(["method"] if with_method else []),
        "the study",
        "verdict on this run",
        "numbers [95% CI]",
        "why",
    ]
    rows = []
    for v in verdicts:
        cells = [f"<td>{html.escape(v.claim)}</td>"]
        if with_method:
            cells.append(f"<td>{html.escape(v.method)}</td>")
        cls = v.verdict.replace(" ", "-")
        cells += [
            f"<td class='study'>{html.escape(v.study)}</td>",
            f"<td class='verdict {cls}'><b>{html.escape(v.verdict)}</b></td>",
            f"<td class='numbers'>{_numbers_html(v)}</td>",
            f"<td class='why'>{html.escape(v.reason)}<details><summary class='meta'>the test</summary>"
            f"<span class='meta'>{html.escape(v.test)}</span></details></td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table class='claims'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _claims_section(lib: QueryLibrary, run: dict, graphs, qtypes, n_boot: int) -> str:
    """ "The study's claims on this run": each finding's verdict with the numbers and intervals behind it
    (``queries.claims``, the same as ``stcg claims``), and claims 4-6 per attribution method."""
    from queries.claims import claims_of_graphs
    from queries.metrics import interval_label

    out = ["<h2 id='claims'>The study's claims on this run</h2>"]
    if not graphs:
        return "".join(out) + "<p class='meta'>(no complete examples: nothing to test)</p>"
    res = claims_of_graphs(lib, run, graphs, qtypes, n_boot=n_boot)
    counts = {k: sum(v.verdict == k for v in res.verdicts) for k in ("supported", "not supported", "not testable")}
    out.append(
        "<p>The STCG study's four findings and two numbers, tested on this run's "
        f"{res.examples} examples: {counts['supported']} supported, {counts['not supported']} not supported, "
        f"{counts['not testable']} not testable. {html.escape(interval_label(n_boot))}. A verdict holds for this "
        "model and data only; claims 5-6 are supported when the interval contains the study's number. "
        "Rules and limits: docs/claims.md; the same numbers: <code>stcg claims --run "
        f"{html.escape(str(run['run_id']))}</code>; point estimates in Cypher: the <code>claim_*</code> templates.</p>"
    )
    out.append(_claims_table(res.verdicts, with_method=False))
    if res.by_method:
        out.append(
            "<h3>Claims 4-6 per attribution method</h3><p class='meta'>They depend on the explanation: claim 4 "
            "from each method's token -> region map, 5-6 as <code>stcg metrics --by-method</code>.</p>"
        )
        out.append(_claims_table(res.by_method, with_method=True))
    return "".join(out)


def build_report(
    lib: QueryLibrary,
    run_id: str,
    store_root: str | None,
    out: str | Path,
    examples: int = 4,
    n_boot: int = 500,
    option: str = "--store",
    ground_truth_run: str | None = None,
) -> Path:
    """Write the report of ``run_id`` (uid or name) to ``out``; returns its path.

    Args:
        lib: the query library.
        run_id: the run's uid or name.
        store_root: its file store root; None = the root the run recorded (``Run.store``).
        out: the HTML file; missing parent folders are created.
        examples: examples shown with heatmaps on their images.
        n_boot: bootstrap resamples of the metric intervals (scipy.stats.bootstrap, BCa).
        option: how a missing-store error names the way to pass the store.
        ground_truth_run: another run (uid or name) on examples with ground-truth masks, ingested with
            --attributions (``stcg demo``'s scenes run): the report opens with its ranking of the
            methods on known evidence.
    """
    import plotly.graph_objects as go

    from queries.metrics import interval_label, load_run_graphs, metrics_table

    figs = Figures()
    run = lib.resolve_run(run_id)
    run_id = run["run_id"]
    summary = lib.run("perturbation_summary", run_id=run_id)
    loc = lib.run("token_localisation", run_id=run_id, group_by="kind", min_count=1)
    words = lib.run("token_localisation", run_id=run_id, group_by="word", min_count=3, limit=15)
    drift = lib.run("temporal_drift", run_id=run_id)
    dissoc = lib.run("dissociation", run_id=run_id)
    graphs, qtypes = load_run_graphs(lib, run, store_root, option)
    metrics = metrics_table(graphs, qtypes, n_boot=n_boot, by_question_type=False) if graphs else pd.DataFrame()

    parts = [
        f"<h1>STCG report: {html.escape(str(run.get('name') or run_id))}</h1>",
        f"<p class='meta'>run <code>{html.escape(run_id)}</code> · model {html.escape(str(run.get('model')))} · dataset "
        f"{html.escape(str(run.get('dataset')))} {html.escape(str(run.get('split') or ''))} · {len(graphs)} "
        f"complete examples · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
    ]

    if ground_truth_run is not None:
        gt_run = lib.resolve_run(ground_truth_run)
        gt_graphs, gt_qtypes = load_run_graphs(lib, gt_run, None, option)
        parts.append(
            f"<div class='lead'><p><b>On known evidence first.</b> Run <code>{html.escape(gt_run['run_id'])}</code> "
            f"({html.escape(str(gt_run.get('dataset')))}, model {html.escape(str(gt_run.get('model')))}, "
            f"{len(gt_graphs)} examples): questions whose evidence is a known mask, so each method's ranking "
            "by the protocol stands beside whether it points at that evidence (docs/faithfulness.md). The "
            "rest of the report is the run above.</p></div>"
        )
        if gt_graphs:
            parts.append(_methods_section(gt_graphs, figs, n_boot, examples, gt_qtypes))

    parts.append(_claims_section(lib, run, graphs, qtypes, n_boot))

    parts.append("<h2>Perturbations: internal change vs answer change</h2>")
    parts.append(_table(summary))
    if not summary.empty:
        fig = go.Figure(
            go.Scatter(
                x=summary["mean_dW_fro"],
                y=summary["flip_rate"],
                mode="markers+text",
                text=summary["perturbation"],
                textposition="top center",
                marker={
                    "size": 14,
                    "color": summary["mean_abs_dp"],
                    "colorscale": "Viridis",
                    "colorbar": {"title": "mean |dp|"},
                },
            )
        )
        fig.update_layout(
            title="mean |dW|_F vs answer flip rate",
            xaxis_title="mean |dW|_F",
            yaxis_title="flip rate",
            height=420,
            margin={"t": 50},
        )
        parts.append(figs.html(fig))
    parts.append("<p>Large |dW| with the answer kept (dissociation):</p>" + _table(dissoc))

    parts.append("<h2>Token-type localisation</h2>")
    parts.append(_table(loc))
    if not loc.empty:
        fig = go.Figure(
            [
                go.Bar(x=loc["group"], y=loc["mean_entropy_bits"], name="entropy (bits)"),
                go.Bar(x=loc["group"], y=loc["mean_top_k_mass"], name="top-k mass"),
            ]
        )
        fig.update_layout(barmode="group", title="region-distribution entropy and top-k mass by token kind", height=380)
        parts.append(figs.html(fig))
    parts.append("<p>Most localised words:</p>" + _table(words))

    parts.append("<h2>Temporal drift across answer steps</h2>")
    parts.append(_table(drift))
    if not drift.empty:
        fig = go.Figure(go.Bar(x=drift["group"], y=drift["mean_js_bits"]))
        fig.update_layout(
            title="mean JS divergence between consecutive steps, by question type", yaxis_title="bits", height=380
        )
        parts.append(figs.html(fig))

    parts.append(f"<h2>Metrics ({html.escape(interval_label(n_boot))})</h2>")
    parts.append(_table(metrics))
    if not metrics.empty:
        m = metrics.dropna(subset=["value"])
        fig = go.Figure(
            go.Scatter(
                x=m["value"],
                y=m["metric"],
                mode="markers",
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": m["ci_high"] - m["value"],
                    "arrayminus": m["value"] - m["ci_low"],
                },
            )
        )
        fig.update_layout(title="metrics with 95% BCa bootstrap intervals", height=320, margin={"l": 220})
        parts.append(figs.html(fig))

    if graphs and any(g.methods for g in graphs):
        parts.append(_methods_section(graphs, figs, n_boot, examples, qtypes))

    parts.append("<h2>Examples</h2>")
    parts.append(example_figures(graphs, examples))
    parts.append(
        "<p class='meta'>Regenerate: <code>stcg report --run " + html.escape(run_id) + "</code>. "
        "Each table is a template of <code>stcg query list</code>.</p>"
    )

    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>STCG report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
