"""The statements that define a run's statistics, shared by the writer (``ingest.stats``) and the
templates (``queries``, through the ``rows_<of>`` fragments): the texts only, no I/O.

``stcg/cypher/stats_<of>.cypher`` computes, from a bound Run ``r``, rows ``r, s`` where ``s`` is one
group's statistics as a map: counts, sums, sums of squares and sorted value lists per group
(perturbation kind x question type, token kind x word, ...), from which a template's means, rates,
correlations and quantiles follow exactly, and the claim 4/5 results per attribution method
(``$method``). ``write_statement(of)`` keeps those rows as ``(:Run)-[:HAS_STATS]->(:Stats {of, run_id,
...})`` nodes; a template reads the nodes, or runs the same statement when a run has none, so its
answer is the same either way (up to float summation order).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from stcg.errors import StcgError

# Statistics per run, and per attribution method (``$method``) of the run.
PER_RUN = (
    "run",
    "perturbations",
    "dW",
    "regions",
    "examples",
    "attribution",
    "transitions",
    "tokens",
    "grounding",
)
PER_METHOD = ("causal", "content")

# The group key of each statistics' rows: a row's uid is ``<run_id>/stats/<of>/<i>``, ``i`` its rank by
# this key (unique per row, so the same data gives the same uids whichever path wrote it), or
# ``<run_id>/stats/<of>/<method>`` for the per-method ones (``dW``: its chunk number).
KEYS = {
    "run": (),
    "perturbations": ("kind", "question_type"),
    "dW": ("chunk",),
    "regions": ("kind", "question_type"),
    "examples": ("question_type", "answer_type", "correct", "grid", "grid_cols"),
    "attribution": ("correct", "grid", "grid_cols"),
    "transitions": ("question_type", "answer_type"),
    "tokens": ("kind", "word"),
    "grounding": ("method", "question_type", "mask_kind"),
    "causal": ("method",),
    "content": ("method",),
}

# The regions statement's rows are per region; one node per (kind, question type) keeps them as
# parallel lists in (row, col) order, unrolled again by the ``rows_regions`` fragment.
_REGION_LISTS = """
WITH r, s ORDER BY s.row, s.col
WITH r, s.kind AS kind, s.question_type AS question_type,
     collect(s.row) AS row, collect(s.col) AS col, collect(s.abs_dW) AS abs_dW, collect(s.examples) AS examples
WITH r, {kind: kind, question_type: question_type, row: row, col: col, abs_dW: abs_dW, examples: examples} AS s
"""


@cache
def stats_statement(of: str) -> str:
    """The body of ``stcg/cypher/stats_<of>.cypher`` (leading comment lines dropped): from a bound Run
    ``r``, rows ``r, s`` with ``s`` a map of one group's statistics."""
    path = resources.files("stcg").joinpath("cypher", f"stats_{of}.cypher")
    if of not in PER_RUN + PER_METHOD or not path.is_file():
        raise StcgError(f"unknown statistics {of!r}; known: {', '.join(PER_RUN + PER_METHOD)}")
    lines = path.read_text().splitlines()
    while lines and (lines[0].startswith("//") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip()


@cache
def write_statement(of: str) -> str:
    """``stats_<of>`` over the run ``$run_id``, each row kept as a ``Stats {of: $of}`` node."""
    if of in PER_METHOD:  # one row, per method
        number, suffix = "", "$method"
    elif of == "dW":  # rows numbered by their chunk already; sorting them would make Neo4j hold, per
        number, suffix = "", "toString(s.chunk)"  # row, the run's whole value list they were cut from
    else:
        key = "[" + ", ".join(f"s.{k}" for k in KEYS[of]) + "]"
        number = f"\nWITH r, s ORDER BY {key}\nWITH r, collect(s) AS rows\nUNWIND range(0, size(rows) - 1) AS i"
        number += "\nWITH r, i, rows[i] AS s"
        suffix = "toString(i)"
    return (
        "MATCH (r:Run {uid: $run_id})\n"
        + stats_statement(of)
        + ("\n" + _REGION_LISTS.strip() if of == "regions" else "")
        + number
        + "\nCREATE (r)-[:HAS_STATS]->(x:Stats)"
        # one SET from one map: a second SET would read what the first wrote, and Neo4j would then buffer
        # every row (an Eager) with all it holds
        + f"\nSET x = s {{.*, uid: r.uid + '/stats/' + $of + '/' + {suffix}, of: $of, run_id: r.uid}}"
    )


__all__ = ["PER_RUN", "PER_METHOD", "KEYS", "stats_statement", "write_statement"]
