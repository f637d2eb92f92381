"""Every template against an independent numpy/pandas computation over the same STCGs, on the real Neo4j."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from ingest.rows import GraphRows, graph_rows
from ingest.runs import RUN_FINISH, RUN_MERGE
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter
from queries.library import QueryLibrary, load_template, template_names
from stcg.errors import StcgError
from stcg_model.testing.synthetic import synthetic_graph

K = 5  # top-k used when writing


def _write_run(driver, run_id, graphs):
    w = Neo4jWriter(driver)
    w.run_query(RUN_MERGE, run_id=run_id, props={"name": run_id, "model": "synthetic", "dataset": "synthetic"})
    rows = GraphRows()
    for g in graphs:
        rows.extend(graph_rows(g, run_id, K))
    w.write(rows)
    w.run_query(RUN_FINISH, run_id=run_id, finished=True, live=0)


@pytest.fixture(scope="module")
def world(driver):
    ensure_schema(driver)
    tag = uuid.uuid4().hex[:8]
    a, b = f"test-q-a-{tag}", f"test-q-b-{tag}"
    rng = np.random.default_rng(42)
    ga = [synthetic_graph(f"ex{i:03d}", rng) for i in range(40)]
    gb = [synthetic_graph(f"ex{i:03d}", rng) for i in range(25)]
    _write_run(driver, b, gb)
    _write_run(driver, a, ga)  # finished last: the default run
    yield {"a": a, "b": b, "ga": ga, "gb": gb, "lib": QueryLibrary(driver)}
    with driver.session() as s:
        for rid in (a, b):
            s.run("MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid).consume()


def _pairs(graphs):
    return pd.DataFrame(
        [
            {
                "example": g.example_id,
                "qtype": g.meta["question_type"],
                "kind": k,
                "dW": float(g.dW_fro[j]),
                "dp": float(g.dp[j]),
                "changed": bool(g.answer_changed[j]),
            }
            for g in graphs
            for j, k in enumerate(g.perturbations)
        ]
    )


def test_every_template_has_a_header_and_runs(world):
    lib = world["lib"]
    assert set(template_names()) >= {
        "perturbation_summary",
        "token_localisation",
        "dissociation",
        "question_type_regions",
        "temporal_drift",
        "flips",
        "faithfulness_by_question_type",
        "example_graph",
    }
    for name in template_names():
        t = load_template(name)
        assert t.question and t.cypher.startswith("// name: " + name)
        required = {p.name: world["a"] for p in t.params if p.required}
        if name == "example_links":
            required = {"example_id": "ex000", "run_id": world["a"]}
        assert isinstance(lib.run(name, **required), pd.DataFrame)


def test_perturbation_summary(world):
    got = world["lib"].run("perturbation_summary").set_index("perturbation")  # default: latest complete run = a
    exp = (
        _pairs(world["ga"])
        .groupby("kind")
        .agg(examples=("dW", "size"), mean_dW_fro=("dW", "mean"), flip_rate=("changed", "mean"), mean_dp=("dp", "mean"))
    )
    assert set(got.index) == set(exp.index)
    for k in exp.index:
        assert got.loc[k, "examples"] == exp.loc[k, "examples"]
        for col in ("mean_dW_fro", "flip_rate", "mean_dp"):
            assert got.loc[k, col] == pytest.approx(exp.loc[k, col], rel=1e-5, abs=1e-7)


def test_token_localisation_by_kind_and_word(world):
    lib, graphs = world["lib"], world["ga"]
    rows = []
    for g in graphs:
        for i in range(len(g.tokens)):
            p = g.W[i].astype(np.float64)
            ent = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
            rows.append(
                {
                    "kind": g.word_kinds[g.token_word[i]],
                    "word": g.words[g.token_word[i]].lower(),
                    "entropy": ent,
                    "mass": float(np.sort(p)[::-1][:K].sum()),
                }
            )
    df = pd.DataFrame(rows)
    got = lib.run("token_localisation", run_id=world["a"], group_by="kind", min_count=1).set_index("group")
    exp = df.groupby("kind").agg(tokens=("entropy", "size"), e=("entropy", "mean"), m=("mass", "mean"))
    for kind in exp.index:
        assert got.loc[kind, "tokens"] == exp.loc[kind, "tokens"]
        assert got.loc[kind, "mean_entropy_bits"] == pytest.approx(exp.loc[kind, "e"], rel=1e-4)
        assert got.loc[kind, "mean_top_k_mass"] == pytest.approx(exp.loc[kind, "m"], rel=1e-4)
    assert list(got["mean_entropy_bits"]) == sorted(got["mean_entropy_bits"])
    words = lib.run("token_localisation", run_id=world["a"], group_by="word", min_count=10)
    expw = df.groupby("word").size()
    assert set(words["group"]) == set(expw[expw >= 10].index)


def test_dissociation(world):
    got = world["lib"].run("dissociation", run_id=world["a"], quantile=0.75).set_index("perturbation")
    df = _pairs(world["ga"])
    thr = np.percentile(df["dW"], 75)
    assert got["large_dW_threshold"].iloc[0] == pytest.approx(thr, rel=1e-5)
    for k, sub in df.groupby("kind"):
        big = sub["dW"] > thr
        assert got.loc[k, "large_dW"] == big.sum()
        assert got.loc[k, "large_dW_answer_kept"] == (big & ~sub["changed"]).sum()
        assert got.loc[k, "large_dW_answer_changed"] == (big & sub["changed"]).sum()


def test_question_type_regions(world):
    got = world["lib"].run("question_type_regions", run_id=world["a"], question_type="what color", per_perturbation=3)
    acc = {}
    for g in world["ga"]:
        if not g.meta["question_type"].startswith("what color"):
            continue
        for j, kind in enumerate(g.perturbations):
            region_abs = np.abs(g.dW[j]).sum(0)
            for p in np.argsort(-region_abs, kind="stable")[:K]:
                key = (kind, int(p) // g.grid, int(p) % g.grid)
                acc[key] = acc.get(key, 0.0) + float(region_abs[p])
    for kind, sub in got.groupby("perturbation"):
        exp = sorted(((v, r, c) for (k, r, c), v in acc.items() if k == kind), reverse=True)[:3]
        assert list(sub["total_abs_dW"]) == pytest.approx([v for v, _, _ in exp], rel=1e-5)
        assert list(sub["rank"]) == [1, 2, 3]


def test_temporal_drift(world):
    got = world["lib"].run("temporal_drift", run_id=world["a"]).set_index("group")
    df = pd.DataFrame([{"qt": g.meta["question_type"], "js": float(x)} for g in world["ga"] for x in g.drift])
    exp = df.groupby("qt")["js"].mean()
    for qt, v in exp.items():
        assert got.loc[qt, "mean_js_bits"] == pytest.approx(v, rel=1e-5)


def test_flips(world):
    got = world["lib"].run("flips", run_id=world["a"], perturbation="patch_shuffle", limit=1000)
    df = _pairs(world["ga"])
    exp = df[(df.kind == "patch_shuffle") & df.changed].sort_values(["dW", "example"], ascending=[False, True])
    assert list(got["example_id"]) == list(exp["example"])
    assert list(got["dp"]) == pytest.approx(list(exp["dp"]), rel=1e-5)


def test_faithfulness_by_question_type(world):
    got = (
        world["lib"].run("faithfulness_by_question_type", run_id=world["a"], min_examples=1).set_index("question_type")
    )
    df = _pairs(world["ga"])
    for qt, sub in df.groupby("qtype"):
        r = np.corrcoef(sub["dW"], sub["dp"].abs())[0, 1]
        assert got.loc[qt, "pearson_dW_abs_dp"] == pytest.approx(r, rel=1e-4)
        gs = [g for g in world["ga"] if g.meta["question_type"] == qt]
        aucs = np.array([g.deletion_auc() for g in gs])
        assert got.loc[qt, "deletion_auc_ratio"] == pytest.approx(aucs[:, 0].sum() / aucs[:, 1].sum(), rel=1e-5)


def test_example_links_and_graph(world):
    g = world["ga"][0]
    links = world["lib"].run("example_links", example_id=g.example_id, run_id=world["a"])
    n, T, Kp = len(g.tokens), len(g.answer_tokens), len(g.perturbations)
    assert (links.source == "token").sum() == n * K and (links.source == "step").sum() == T * K
    assert (links.source == "dW").sum() == n * Kp * K
    tok0 = links[(links.source == "token") & (links.source_index == 0)].sort_values("rank")
    assert list(tok0["region"]) == list(np.argsort(-g.W[0], kind="stable")[:K])
    lib, ex, run = world["lib"], g.example_id, world["a"]
    if load_template("example_graph").param("view") is None:
        assert len(lib.run("example_graph", example_id=ex, run_id=run, max_rank=1)) == n + T + (T - 1) + Kp
    else:  # one view at a time: tokens -> top region; perturbations -> top region; steps -> regions, NEXT, tokens
        assert len(lib.run("example_graph", example_id=ex, run_id=run, max_rank=1, view="structural")) == n
        assert len(lib.run("example_graph", example_id=ex, run_id=run, max_rank=1, view="counterfactual")) == Kp
        assert len(lib.run("example_graph", example_id=ex, run_id=run, max_rank=1, view="temporal")) >= T + (T - 1) + T


def test_compare_runs(world):
    got = world["lib"].run("compare_runs", run_a=world["a"], run_b=world["b"]).set_index("perturbation")
    ea, eb = _pairs(world["ga"]).groupby("kind")["dW"].mean(), _pairs(world["gb"]).groupby("kind")["dW"].mean()
    for k in ea.index:
        assert got.loc[k, "a_mean_dW_fro"] == pytest.approx(ea[k], rel=1e-5)
        assert got.loc[k, "b_mean_dW_fro"] == pytest.approx(eb[k], rel=1e-5)
        assert got.loc[k, "a_examples"] == 40 and got.loc[k, "b_examples"] == 25


def test_wrong_answer_regions(world):
    from stcg_model.maths.text import normalize_answer

    got = world["lib"].run("wrong_answer_regions", run_id=world["a"], limit=64)
    rows = [
        {
            "rc": (p // g.grid, p % g.grid),
            "wrong": normalize_answer(g.answer) != normalize_answer(g.meta["gt_answer"]),
            "a": float(g.attribution[p]),
        }
        for g in world["ga"]
        for p in range(g.num_regions)
    ]
    df = pd.DataFrame(rows)
    wrong, right = df[df.wrong].groupby("rc")["a"].mean(), df[~df.wrong].groupby("rc")["a"].mean()
    excess = (wrong.reindex(right.index).fillna(0) - right).sort_values(ascending=False)
    top = got.iloc[0]
    assert top["excess"] == pytest.approx(excess.iloc[0], rel=1e-4)


def test_parameters_are_validated_and_injection_changes_nothing(world, driver):
    lib = world["lib"]
    with pytest.raises(StcgError, match="no parameter bogus; its parameters: run_id, perturbation, limit"):
        lib.run("flips", bogus=1)
    with pytest.raises(StcgError, match=r"unknown template 'nope'; templates: (\w+, )*compare_runs, "):
        lib.run("nope")
    with pytest.raises(StcgError, match="must be int"):
        lib.run("flips", limit="ten")
    before = driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"]
    evil = "color_shift'}) MATCH (n) DETACH DELETE n //"
    with pytest.raises(StcgError, match="unknown perturbation"):  # treated as text: no such kind
        lib.run("flips", run_id=world["a"], perturbation=evil)
    assert len(lib.run("question_type_regions", run_id=world["a"], question_type="x' OR 1=1 //")) == 0
    assert driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"] == before


def test_cli_query_run_formats(world):
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stcg_cli.main",
            "query",
            "run",
            "perturbation_summary",
            "--param",
            f"run_id={world['a']}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {r["perturbation"] for r in rows} == set(world["ga"][0].perturbations)
    bad = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "query", "run", "flips", "--param", "limit=x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: parameter 'limit' must be int, got 'x'"
    desc = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "query", "describe", "flips"], capture_output=True, text=True
    )
    assert ':param perturbation => "color_shift"' in desc.stdout and ":param run_id => null" in desc.stdout


def _cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _param_lines(text):
    return [ln for ln in text.splitlines() if ln.startswith(":param")]


def test_describe_prints_a_real_example_id_and_semicolon_terminated_param_lines(world, driver):
    res = _cli("query", "describe", "example_links", "--param", f"run_id={world['a']}")
    assert res.returncode == 0, res.stderr
    lines = _param_lines(res.stdout)
    assert lines == [
        ':param example_id => "ex000";',
        f':param run_id => "{world["a"]}";',
        ':param method => "attention";',
    ]
    assert "=> null" not in res.stdout and ":params" not in res.stdout
    assert "MATCH (r:Run)" in res.stdout and "@include" not in res.stdout  # the expanded, Browser-ready query
    # without a run: a real example of the default run, and show prints only the paste-ready text
    res = _cli("query", "show", "example_links")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith(':param example_id => "') and first.endswith('";') and "<" not in first
    ex = first.split('"')[1]
    assert driver.execute_query("MATCH (e:Example {example_id: $x}) RETURN count(e) AS c", x=ex).records[0]["c"] >= 1
    assert res.stdout.splitlines()[3].startswith("// name: example_links")
    assert all(ln.endswith(";") for ln in _param_lines(res.stdout))
    res = _cli("query", "show", "compare_runs")
    assert all('"<' not in ln for ln in _param_lines(res.stdout)), res.stdout  # run_a / run_b: real run ids
    # no database: a clearly marked placeholder, and a note on stderr
    res = _cli("query", "show", "example_links", env={"NEO4J_URI": "bolt://127.0.0.1:1"})
    assert res.returncode == 0 and res.stdout.splitlines()[0] == ':param example_id => "<example_id>";'
    assert res.stderr.startswith("note: example_id: placeholder") and len(res.stderr.strip().splitlines()) == 1


def test_pasted_text_runs_as_browser_runs_it(world, driver):
    """Browser evaluates each `:param name => expr;` as Cypher, then runs the query: emulate it."""
    lib = world["lib"]
    for name, values in [("example_links", {"run_id": world["a"]}), ("flips", {}), ("token_localisation", {})]:
        text = lib.browser_text(name, **values)
        params = {}
        for ln in _param_lines(text):
            key, expr = ln[len(":param ") :].rstrip(";").split(" => ", 1)
            params[key] = driver.execute_query(f"RETURN {expr} AS v").records[0]["v"]
        query = text.split("\n", len(params))[-1]
        got = driver.execute_query(query, params).records
        assert len(got) == len(lib.run(name, **params)) > 0, name
    assert isinstance(params["limit"], int)  # `=>` keeps integers integers


def test_neo4j_browser_runs_the_pasted_text(world, neo4j_settings):
    """The text `stcg query show` prints, pasted into the real Neo4j Browser, runs: every statement succeeds."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    text = world["lib"].browser_text("example_links", run_id=world["a"])
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1200"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(shutil_which("chromedriver")), options=opts)
    try:
        url = os.environ.get("STCG_BROWSER_URL", "http://127.0.0.1:7474/browser/")
        d.get(f"{url}?dbms=bolt://{neo4j_settings.username}@127.0.0.1:7687")
        wait = WebDriverWait(d, 60)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[data-testid=password]"))).send_keys(
            neo4j_settings.password, Keys.ENTER
        )
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'You are connected as user')]")))
        editor = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".monaco-editor textarea")))
        editor.click()
        d.execute_script(  # a real paste event, as Ctrl+V makes
            "const dt = new DataTransfer(); dt.setData('text/plain', arguments[0]);"
            "arguments[1].dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));",
            text,
            editor,
        )
        editor.send_keys(Keys.CONTROL, Keys.ENTER)
        icons = "[data-testid=multi-statement-list-icon]"

        def finished(drv):
            got = [e.get_attribute("title") for e in drv.find_elements(By.CSS_SELECTOR, icons)]
            return got if len(got) == 4 and all(t in ("Status: success", "Status: error") for t in got) else False

        statuses = wait.until(finished)
        assert statuses == ["Status: success"] * 4, statuses  # three :param commands, then the query
    finally:
        d.quit()


def shutil_which(name):
    import shutil

    path = shutil.which(name)
    assert path, f"{name} is needed (Debian's chromium-driver, installed by .ci/run)"
    return path


def test_run_examples_lists_the_runs_examples(world):
    lib, graphs = world["lib"], world["ga"]
    got = lib.run("run_examples", run_id=world["a"], limit=1000)
    assert list(got.example_id) == sorted(g.example_id for g in graphs)
    assert list(got.columns) == ["example_id", "question", "question_type", "answer", "gt_answer", "flipped_under"]
    first = next(g for g in graphs if g.example_id == got.example_id.iloc[0])
    assert got.question.iloc[0] == first.question and got.answer.iloc[0] == first.answer
    flips = {g.example_id: {k for j, k in enumerate(g.perturbations) if g.answer_changed[j]} for g in graphs}
    assert {r.example_id: set(r.flipped_under) for r in got.itertuples()} == flips
    shuffled = lib.run("run_examples", run_id=world["a"], perturbation="patch_shuffle", limit=1000)
    assert set(shuffled.example_id) == {e for e, f in flips.items() if "patch_shuffle" in f}
    changed = lib.run("run_examples", run_id=world["a"], changed_only=True, limit=1000)
    assert set(changed.example_id) == {e for e, f in flips.items() if f}
    color = lib.run("run_examples", run_id=world["b"], question_type="what color", limit=3)
    assert len(color) <= 3 and all(q.startswith("what color") for q in color.question_type)


def test_a_newer_partial_run_is_announced_in_one_line(world, driver):
    tag = uuid.uuid4().hex[:8]
    partial, failed = f"test-q-partial-{tag}", f"test-q-failed-{tag}"
    # 'newer' than any run that completes while this test runs (the database is shared)
    driver.execute_query(
        "CREATE (:Run {uid: $p, run_id: $p, name: $p, status: 'partial', started_at: datetime(), "
        "  updated_at: datetime() + duration('PT10M')}), "
        "(:Run {uid: $f, run_id: $f, name: $f, status: 'failed', started_at: datetime(), "
        "  finished_at: datetime() + duration('PT10M'), updated_at: datetime() + duration('PT10M')})",
        p=partial,
        f=failed,
    )
    try:
        res = _cli("query", "run", "perturbation_summary")
        assert res.returncode == 0, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert partial in lines[0] and "partial" in lines[0] and f"--param run_id={partial}" in lines[0]
        assert "latest complete" in lines[0]
        res = _cli("query", "run", "perturbation_summary", "--param", f"run_id={world['a']}")
        assert res.returncode == 0 and res.stderr == ""  # a named run: nothing to say
        notes = []
        lib = QueryLibrary(world["lib"].driver, notice=notes.append, run_hint="--run {run}")
        info = lib.resolve_run()
        lib.run("flips")  # a second default read in the same session: still one line
        assert len(notes) == 1 and f"--run {partial}" in notes[0]
        assert info["status"] == "complete" and info["run_id"] != failed  # 'failed' is never the default
        assert lib.resolve_run(failed)["status"] == "failed"  # ...but can be named
    finally:
        driver.execute_query("MATCH (r:Run) WHERE r.uid IN [$p, $f] DELETE r", p=partial, f=failed)


def test_query_run_uses_password_without_username(world):
    from stcg.config import Neo4jSettings

    password = Neo4jSettings.from_env().password
    res = _cli(
        "query", "run", "runs", "--param", "limit=1", "--password", password, env={"NEO4J_PASSWORD": "wrong-password"}
    )
    assert res.returncode == 0, res.stderr
