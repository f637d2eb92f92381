"""A parameter that names nothing is said, never shown as "(no rows)" (issue 22 item 9): a run that does
not exist, a perturbation kind that does not exist or that the run lacks, a method the run has no
explanations of. An empty answer about things that do exist stays an empty answer. Real Neo4j."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import pytest

from ingest.runs import RUN_FINISH, RUN_MERGE
from ingest.writer import Neo4jWriter
from queries.library import QueryLibrary
from stcg.errors import StcgError
from stcg_model.testing.synthetic import synthetic_graph
from tests.test_queries import _write_run


@pytest.fixture(scope="module")
def runs(driver):
    tag = uuid.uuid4().hex[:8]
    full, empty = f"test-msg-full-{tag}", f"test-msg-empty-{tag}"
    _write_run(driver, full, [synthetic_graph(f"ex{i}", np.random.default_rng(i)) for i in range(6)])
    w = Neo4jWriter(driver)  # a run of one perturbation kind and no example
    w.run_query(RUN_MERGE, run_id=empty, props={"name": empty, "perturbations": ["center_mask"]})
    w.run_query(RUN_FINISH, run_id=empty, finished=True, live=0)
    yield {"full": full, "empty": empty, "lib": QueryLibrary(driver)}
    with driver.session() as s:
        for rid in (full, empty):
            s.run("MATCH (n {run_id: $r}) DETACH DELETE n", r=rid).consume()


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("flips", {"run_id": "no-such-run"}, "no run 'no-such-run' in this database (list them: stcg query run runs)"),
        ("compare_runs", {"run_a": "FULL", "run_b": "nope-b"}, "no run 'nope-b' in this database"),
        ("flips", {"run_id": "FULL", "perturbation": "nope"}, "unknown perturbation 'nope': the kinds are center_mask, "),
        ("flips", {"run_id": "EMPTY", "perturbation": "color_shift"}, "run 'EMPTY' has no perturbation 'color_shift' (it has: center_mask)"),
        ("claim_jaccard_stability", {"run_id": "FULL", "method": "nope"}, "run 'FULL' has no explanations of method 'nope' (it has: attention; "),
        ("method_agreement", {"run_id": "FULL", "method_b": "rolout"}, "run 'FULL' has no explanations of method 'rolout'"),
    ],
)  # fmt: skip
def test_a_parameter_naming_nothing_is_said(runs, name, params, message):
    params = {k: v.replace("FULL", runs["full"]).replace("EMPTY", runs["empty"]) for k, v in params.items()}
    message = message.replace("FULL", runs["full"]).replace("EMPTY", runs["empty"])
    with pytest.raises(StcgError) as e:
        runs["lib"].run(name, **params)
    assert str(e.value).startswith(message), str(e.value)


def test_an_empty_answer_about_real_things_stays_empty(runs):
    lib = runs["lib"]
    assert lib.run("flips", run_id=runs["empty"], perturbation="center_mask").empty
    assert lib.run("run_examples", run_id=runs["empty"]).empty


@pytest.mark.parametrize("param", ["run_id=no-such-run", "perturbation=nope"])
def test_the_cli_says_it_in_one_line(runs, param):
    cmd = [sys.executable, "-m", "stcg_cli.main", "query", "run", "flips", "--param", param]
    if param.startswith("perturbation"):
        cmd += ["--param", f"run_id={runs['full']}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "(no rows)" not in res.stdout
