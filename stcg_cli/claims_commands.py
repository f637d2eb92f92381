"""``stcg claims``: the study's findings tested on a run, a verdict with 95% intervals for each."""

from __future__ import annotations

import json
import textwrap

import click

from stcg_cli.options import neo4j_options
from stcg_cli.query_commands import echo_error, open_library, run_option, store_option


def _cell(e) -> str:
    if e.value != e.value:  # NaN
        return "n/a"
    return f"{e.value:.3f}" + ("" if e.low != e.low else f" [{e.low:.3f}, {e.high:.3f}]")


def _text(df) -> str:
    """``df`` as left-aligned text columns (numbers as they print), two spaces apart."""
    cols = [[str(c)] + [str(x) for x in df[c]] for c in df.columns]
    widths = [max(len(x) for x in col) for col in cols]
    return "\n".join("  ".join(col[r].ljust(w) for col, w in zip(cols, widths)).rstrip() for r in range(len(df) + 1))


def _block(v, width: int = 100) -> list[str]:
    import pandas as pd

    lines = [f"claim {v.claim}: {v.verdict.upper()} -- {v.study}"]
    for label, text in (("test:", v.test), ("why:", v.reason)):
        lines += textwrap.wrap(text, width, initial_indent=f"  {label:<6}", subsequent_indent="        ")
    if v.measures:
        df = pd.DataFrame(
            [
                {"measure": m.name, "of": m.group, "value [95% CI]": _cell(m.estimate), "n": m.estimate.n, "": m.detail}
                for m in v.measures
            ]
        )
        lines += ["  " + ln for ln in _text(df).splitlines()]
    return lines


def _method_table(verdicts) -> str:
    import pandas as pd

    rows = []
    for v in verdicts:
        nums = ", ".join(f"{m.group if v.claim == '4' else m.name}: {_cell(m.estimate)}" for m in v.measures)
        rows.append({"method": v.method, "claim": v.claim, "verdict": v.verdict, "numbers [95% CI]": nums or v.reason})
    return _text(pd.DataFrame(rows))


@click.command("claims")
@run_option
@store_option
@click.option(
    "--bootstrap", "n_boot", default=1000, show_default=True, help="Bootstrap resamples for the 95% BCa intervals."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option(
    "--methods/--attention-only",
    default=True,
    show_default=True,
    help="Also claims 4-6 under every attribution method the run holds (ingested with --attributions).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: a block per claim; json: every verdict with its numbers; csv: one row per number.",
)
@neo4j_options
def claims(run, store, n_boot, seed, methods, fmt, uri, username, password, database):
    """Test the STCG study's findings on a run: supported / not supported / not testable, with 95% intervals.

    \b
    1. patch_shuffle and peripheral_mask produce the largest mean |dW|_F (their intervals lie
       above every other perturbation's)
    2. color_shift changes p(answer) most on colour questions (|dp| colour minus other questions,
       and color_shift minus each other perturbation on colour questions, intervals above 0)
    3. a perturbation with comparable |dW|_F leaves the answer unchanged (study: gaussian_noise;
       comparable = at least 0.5 of the largest mean |dW|_F, unchanged = flip rate at most 0.1)
    4. content tokens have lower entropy, higher top-k mass and smaller spread than function
       tokens (paired per example, intervals exclude 0 in that direction)
    5. causal faithfulness (Pearson of |dW|_F with |dp|) is -0.31: supported when the interval
       contains it
    6. Jaccard stability under gaussian_noise is 0.23: likewise

    Intervals: scipy.stats.bootstrap BCa over whole examples (claims 5-6 are the numbers of
    `stcg metrics`). Reads the run's complete examples from Neo4j and its file store (--store
    overrides the recorded one); no model re-run. Point estimates in pure Cypher: the claim_*
    templates of `stcg query list`. Meaning and limits: docs/claims.md.
    """
    from queries.claims import claims_json, measure_rows, run_claims
    from queries.metrics import interval_label
    from stcg.errors import StcgError

    if n_boot < 1:
        raise StcgError("--bootstrap must be >= 1")
    if seed < 0:
        raise StcgError("--seed must be >= 0")
    with open_library(uri, username, password, database, run_hint="--run {run}") as lib:
        result = run_claims(lib, run, store, n_boot=n_boot, seed=seed, option="--store", methods=methods)
    info = result.run
    head = f"run {info['run_id']}: {result.examples} examples, top-k {result.top_k}; {interval_label(n_boot)}" + (
        "" if not methods or result.by_method else "; only attention is stored (no per-method claims)"
    )
    if fmt == "json":
        echo_error(head)
        click.echo(json.dumps(claims_json(result), indent=1, default=float))
        return
    if fmt == "csv":
        echo_error(head)
        click.echo(measure_rows(result.verdicts + result.by_method).to_csv(index=False).rstrip())
        return
    lines = [head, ""]
    for v in result.verdicts:
        lines += _block(v) + [""]
    if result.by_method:
        lines += ["claims 4-6 per attribution method (numbers of `stcg metrics --by-method` for 5-6):"]
        lines += [_method_table(result.by_method)]
    click.echo("\n".join(lines).rstrip())
