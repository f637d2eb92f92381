"""A run's statistics (``Stats`` nodes): the whole-run templates answer the same from them as from the
graph, read them instead of the graph, and the pipeline writes and drops them at the right moments.
All against the real Neo4j server; the runs are synthetic STCGs written by the real writer."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from ingest.pipeline import claim_run, finish_run
from ingest.schema import ensure_schema
from ingest.stats import drop_run_stats, write_run_stats
from ingest.writer import Neo4jWriter
from queries.library import QueryLibrary, load_template, template_names
from stcg.statistics import PER_METHOD, PER_RUN, stats_statement, write_statement
from stcg_model.testing.synthetic import add_ground_truth, synthetic_graph
from tests.test_queries import _write_run

METHODS = ("rollout", "occlusion")

# Every public template that reads a whole run, with parameter values that reach each branch of it
# (question-type prefixes, quantiles at and between the ends, both groupings, every method and one
# that the run lacks).
CASES = {
    "perturbation_summary": [{}],
    "claim_spatial_dw": [{}],
    "claim_dissociation": [{}, {"min_relative_dW": 0.9, "max_flip_rate": 0.5}],
    "claim_colour_dp": [{}, {"perturbation": "gaussian_noise"}],
    "claim_causal_faithfulness": [{}, {"method": "rollout"}, {"method": "occlusion"}, {"method": "absent"}],
    "claim_content_function": [{}, {"method": "rollout"}, {"method": "occlusion"}],
    "claim_jaccard_stability": [{}, {"method": "rollout"}],
    "faithfulness_by_question_type": [{}, {"min_examples": 1}],
    "question_type_regions": [{}, {"question_type": "what"}, {"question_type": ""}, {"per_perturbation": 64}],
    "wrong_answer_regions": [{}, {"limit": 1000}],
    "dissociation": [{}, {"quantile": 0.0}, {"quantile": 1.0}, {"quantile": 0.5}, {"quantile": 0.333}],
    "token_localisation": [{}, {"group_by": "word", "min_count": 1, "limit": 1000}],
    "temporal_drift": [{}, {"include_eos": False}, {"group_by": "answer_type"}],
    "method_faithfulness": [{}],
    "method_agreement": [{"method_a": "attention", "method_b": "rollout"}],
    "method_grounding": [{}, {"by_mask_kind": True}, {"by_question_type": True, "min_examples": 3}],
    "flips": [{}],
    "run_examples": [{}],
}


@pytest.fixture(scope="module")
def world(driver):
    ensure_schema(driver)
    tag = uuid.uuid4().hex[:8]
    a, b = f"test-stats-a-{tag}", f"test-stats-b-{tag}"
    writer = Neo4jWriter(driver)
    rng = np.random.default_rng(7)
    graphs = {
        run: [synthetic_graph(f"ex{i:03d}", rng, methods=METHODS) for i in range(n)] for run, n in ((b, 20), (a, 70))
    }
    for i, g in enumerate(graphs[a][:50]):  # most examples of a carry a ground-truth mask, of every kind
        add_ground_truth(g, rng, ("single", "union", "all")[i % 3])
    for run in (b, a):  # a finished last: the default run
        _write_run(driver, run, graphs[run])
    yield {"a": a, "b": b, "writer": writer, "lib": QueryLibrary(driver)}
    with driver.session() as s:
        for rid in (a, b):
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid).consume()


def _same(a, b) -> bool:
    """Equal up to float summation order; lists of question types compared as sets."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if a and all(isinstance(x, str) for x in a):
            a, b = sorted(a), sorted(b)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def _answers(lib, world, with_stats: bool) -> dict:
    for rid in (world["a"], world["b"]):
        if with_stats:
            write_run_stats(world["writer"], rid, force=True)
        else:
            drop_run_stats(world["writer"], rid)
    out = {}
    for name, cases in CASES.items():
        for i, kw in enumerate(cases):
            out[(name, i)] = lib.run(name, run_id=world["a"], **kw).to_dict("records")
    out[("compare_runs", 0)] = lib.run("compare_runs", run_a=world["a"], run_b=world["b"]).to_dict("records")
    out[("compare_runs", 1)] = lib.run("compare_runs", run_a=world["b"], run_b=world["a"]).to_dict("records")
    return out


def test_every_whole_run_template_answers_the_same_from_the_statistics_as_from_the_graph(world):
    """The Stats path and the fallback that computes the same statistics from the graph agree on every
    template and parameter case; the answers are not empty."""
    lib = world["lib"]
    covered = {
        n for n in template_names() if load_template(n).param("run_id") and not load_template(n).param("example_id")
    }
    assert covered - {"runs"} <= set(CASES) | {"compare_runs"}, "a whole-run template without a case"
    scanned = _answers(lib, world, with_stats=False)
    stored = _answers(lib, world, with_stats=True)
    assert scanned.keys() == stored.keys()
    for key in scanned:
        assert len(scanned[key]) == len(stored[key]), key
        assert all(_same(x, y) for x, y in zip(scanned[key], stored[key])), key
    empty = sorted(k for k, v in stored.items() if not v)
    # the absent method has no content-function rows; synthetic answers have no step before </s>
    assert empty == [("claim_content_function", 2), ("temporal_drift", 1)], empty


def test_the_templates_read_the_statistics_not_the_graph(world, driver):
    """Change the graph under written statistics: the templates keep the written answer; drop the
    statistics and they see the change. (This is also what a run being written to would show, which
    is why a command that writes into a run drops them first.)"""
    lib, run = world["lib"], world["a"]
    write_run_stats(world["writer"], run, force=True)
    before = lib.run("perturbation_summary", run_id=run).set_index("perturbation")
    q = "MATCH (:Run {uid: $r})-[:HAS_EXAMPLE]->(:Example)-[:HAS_PERTURBATION]->(p:Perturbation {kind: 'color_shift'}) "
    with driver.session() as s:
        s.run(q + "SET p.dW_fro = p.dW_fro + 100.0", r=run).consume()
    try:
        same = lib.run("perturbation_summary", run_id=run).set_index("perturbation")
        assert same.loc["color_shift", "mean_dW_fro"] == pytest.approx(before.loc["color_shift", "mean_dW_fro"])
        drop_run_stats(world["writer"], run)
        moved = lib.run("perturbation_summary", run_id=run).set_index("perturbation")
        assert moved.loc["color_shift", "mean_dW_fro"] == pytest.approx(before.loc["color_shift", "mean_dW_fro"] + 100)
    finally:
        with driver.session() as s:
            s.run(q + "SET p.dW_fro = p.dW_fro - 100.0", r=run).consume()
        write_run_stats(world["writer"], run, force=True)


def test_stats_nodes_per_group_and_method(world, driver):
    run = world["a"]
    write_run_stats(world["writer"], run, force=True)
    with driver.session() as s:
        got = {
            (r["of"], r["method"]): r["n"]
            for r in s.run(
                "MATCH (:Run {uid: $r})-[:HAS_STATS]->(x:Stats) RETURN x.of AS of, x.method AS method, count(*) AS n",
                r=run,
            )
        }
        kinds = s.run(
            "MATCH (:Run {uid: $r})-[:HAS_EXAMPLE]->(e)-[:HAS_PERTURBATION]->(p) "
            "RETURN count(DISTINCT [p.kind, e.question_type]) AS n",
            r=run,
        ).single()["n"]
    assert got[("run", None)] == 1 and got[("perturbations", None)] == kinds
    assert {m for (of, m) in got if of in PER_METHOD} == {"attention", *METHODS}
    assert {of for of, _ in got} == set(PER_RUN + PER_METHOD)


def test_statistics_are_rewritten_only_when_stale(world):
    run, writer = world["a"], world["writer"]
    first = write_run_stats(writer, run, force=True)
    assert first["written"] and first["examples"] == 70 and first["methods"] == ["attention", *sorted(METHODS)]
    assert write_run_stats(writer, run)["written"] is False  # current: as many complete examples as the run
    writer.run_query("MATCH (e:Example {run_id: $r, example_id: 'ex000'}) SET e.complete = false", r=run)
    try:
        again = write_run_stats(writer, run)
        assert again["written"] and again["examples"] == 69
    finally:
        writer.run_query("MATCH (e:Example {run_id: $r, example_id: 'ex000'}) SET e.complete = true", r=run)
        write_run_stats(writer, run)


def test_claiming_a_run_drops_its_statistics_and_finishing_it_writes_them(world, tmp_path):
    """A command writing into a run removes them in its claim transaction (templates then compute from
    the graph); its finish, when the run is complete, writes them again."""
    run, writer = world["b"], world["writer"]
    write_run_stats(writer, run, force=True)
    count = "MATCH (:Run {uid: $r})-[:HAS_STATS]->(x:Stats) RETURN count(x) AS n"
    assert writer.run_query(count, r=run)[0]["n"] > 0
    claim_run(writer, run, "identity-of-this-test", str(tmp_path), {"status": "running"})
    assert writer.run_query(count, r=run)[0]["n"] == 0
    end = finish_run(writer, run, finished=True)
    assert end["status"] == "complete" and end["stats"]["written"] and end["stats"]["examples"] == 20
    assert writer.run_query(count, r=run)[0]["n"] > 0


def test_statements_are_one_definition():
    """The fallback inside each template is the very statement the writer stores (one text, two uses)."""

    def flat(text: str) -> str:  # included with the indentation of its place
        return " ".join(text.split())

    for of in PER_RUN + PER_METHOD:
        assert flat(stats_statement(of)) in flat(write_statement(of))
        if of in ("run", "dW"):  # the writer's own bookkeeping; dissociation's chunks (its fallback is
            continue  # percentileCont over the graph, the definition the chunks reproduce)
        users = [n for n in template_names() if flat(stats_statement(of)) in flat(load_template(n).cypher)]
        assert users, f"no template reads the {of} statistics"


@pytest.mark.parametrize("width", [1, 7, 64, 5000])
def test_dissociation_from_chunks_equals_percentilecont_over_the_graph(world, driver, width):
    """The quantile and the counts above it, read from a few chunks, equal percentileCont and counting
    over the graph: chunks of one value, of a few, and one chunk for all; with ties crossing chunk
    boundaries (values rounded to 0.1) and an unknown answer (answer_changed removed)."""
    lib, run, writer = world["lib"], world["a"], world["writer"]
    quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0]
    q = "MATCH (:Run {uid: $r})-[:HAS_EXAMPLE]->(:Example)-[:HAS_PERTURBATION]->(p:Perturbation) "
    with driver.session() as s:
        s.run(q + "SET p.dW_saved = p.dW_fro, p.changed_saved = p.answer_changed", r=run).consume()
        s.run(q + "SET p.dW_fro = round(p.dW_fro * 10) / 10.0", r=run).consume()
        s.run(q + "WITH p LIMIT 5 REMOVE p.answer_changed", r=run).consume()
    try:
        drop_run_stats(writer, run)
        scanned = [lib.run("dissociation", run_id=run, quantile=x).to_dict("records") for x in quantiles]
        write_run_stats(writer, run, force=True, chunk_width=width)
        stored = [lib.run("dissociation", run_id=run, quantile=x).to_dict("records") for x in quantiles]
        assert scanned == stored  # counts exact, threshold computed as Neo4j computes it
        assert any(r["large_dW"] for rows in stored for r in rows) and len(stored[0]) == 6
    finally:
        with driver.session() as s:
            s.run(q + "SET p.dW_fro = p.dW_saved, p.answer_changed = p.changed_saved", r=run).consume()
            s.run(q + "REMOVE p.dW_saved, p.changed_saved", r=run).consume()
        write_run_stats(writer, run, force=True)
