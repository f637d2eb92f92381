"""Template headers: typed parameters with ranges / choices checked before any query runs; fragments included once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from queries.library import QueryLibrary
from queries.templates import (
    Template,
    cypher_literal,
    expand_includes,
    load_fragment,
    load_template,
    template_names,
)
from stcg.errors import StcgError

RUN_SCOPE = """MATCH (r:Run)
WHERE CASE WHEN $run_id IS NULL THEN r.status = 'complete' ELSE r.uid = $run_id OR r.name = $run_id END
WITH r ORDER BY r.finished_at DESC LIMIT 1"""
OWNED_ELSEWHERE = {"example_graph"}  # its author converts it; checked for includes, not for declared ranges


class NoServer:
    """A driver that fails the test if anything reaches it."""

    def execute_query(self, *a, **kw):
        raise AssertionError("the query reached the server")


def _body_refs(cypher: str) -> set[str]:
    code = "\n".join(ln.split("//", 1)[0] for ln in cypher.splitlines() if not ln.lstrip().startswith("//"))
    return set(re.findall(r"\$(\w+)", code))


@pytest.mark.parametrize("name", template_names(internal=True))
def test_every_template_is_consistent(name):
    t = load_template(name)
    assert t.question
    declared = {p.name for p in t.params}
    assert _body_refs(t.cypher) == declared, "every $param is declared and every declared param is used"
    for p in t.params:
        if p.default is not None:
            assert p.coerce(p.default) == p.default
        if name not in OWNED_ELSEWHERE and p.type in ("int", "float"):
            assert p.minimum is not None or p.maximum is not None, f"{name}.{p.name} declares no range"
    if name not in OWNED_ELSEWHERE:
        for p in t.params:
            if p.name == "group_by":
                assert p.choices, f"{name}.group_by declares no choices"
    code = "\n".join(ln for ln in t.cypher.splitlines() if not ln.lstrip().startswith("//"))
    assert ";" not in code, "one statement: a ';' would split the Browser paste (comments may hold one)"


def test_run_scope_is_written_once_and_included_everywhere():
    assert load_fragment("run_scope") == RUN_SCOPE
    for name in template_names(internal=True):
        t = load_template(name)
        if "run_id" not in {p.name for p in t.params}:
            continue
        assert RUN_SCOPE not in t.source, f"{name} repeats the run preamble instead of // @include run_scope"
        assert t.source.count("// @include run_scope") == 1
        assert t.cypher.count(RUN_SCOPE) == 1 and "@include" not in t.cypher
    # public templates that read one run take run_id, and an unconverted file still parses and runs as written
    inline = "// name: old\n// param: run_id string = null  -- run\n" + RUN_SCOPE + "\nRETURN r.uid AS run_id\n"
    t = Template.parse("old", inline)
    assert t.cypher == inline


def test_includes_expand_with_indentation_and_refuse_unknown_or_cyclic_fragments():
    text = "// name: t\nCALL () {\n  // @include run_scope\n  RETURN r\n}\nRETURN r\n"
    out = expand_includes(text)
    assert "  MATCH (r:Run)\n  WHERE CASE" in out and "@include" not in out
    with pytest.raises(StcgError, match="unknown fragment 'nope'.*fragments: .*run_scope"):
        expand_includes("// @include nope\n")
    with pytest.raises(StcgError, match="includes itself"):
        expand_includes("// @include run_scope\n", ("run_scope",))


def test_header_syntax_ranges_choices_and_bad_lines():
    t = Template.parse(
        "h",
        "// name: h\n"
        "// param: limit int = 20 [1..100000]  -- rows\n"
        "// param: q float = 0.5 [0..1]  -- quantile\n"
        '// param: by string = "kind" {kind|word}  -- grouping\n'
        "// param: lo int = -3 [..0]\n"
        "// param: flag bool = false\n"
        "// param: who string\n"
        "RETURN $limit, $q, $by, $lo, $flag, $who\n",
    )
    p = {x.name: x for x in t.params}
    assert (p["limit"].minimum, p["limit"].maximum, p["limit"].default) == (1, 100000, 20)
    assert (p["q"].minimum, p["q"].maximum) == (0.0, 1.0) and p["q"].range_text == "[0..1]"
    assert p["by"].choices == ("kind", "word") and p["by"].default == "kind"
    assert (p["lo"].minimum, p["lo"].maximum) == (None, 0)
    assert p["who"].required and not p["flag"].required
    with pytest.raises(StcgError, match="bad parameter line"):
        Template.parse("b", "// name: b\n// param: limit integer = 3\nRETURN 1\n")
    with pytest.raises(StcgError, match="the default of parameter 'limit' must be between 1 and 10"):
        Template.parse("b", "// name: b\n// param: limit int = 30 [1..10]\nRETURN $limit\n")
    with pytest.raises(StcgError, match="choices"):
        Template.parse("b", "// name: b\n// param: n int = 3 {1|2}\nRETURN $n\n")


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("flips", {"limit": -1}, "parameter 'limit' must be >= 1, got -1"),
        ("flips", {"limit": "0"}, "parameter 'limit' must be >= 1, got 0"),
        ("runs", {"limit": 2**63}, "parameter 'limit' must be a 64-bit integer, got 9223372036854775808"),
        ("flips", {"limit": "99999999999999999999"}, "parameter 'limit' must be a 64-bit integer"),
        ("flips", {"limit": 2.5}, "parameter 'limit' must be int, got 2.5"),
        ("dissociation", {"quantile": 2}, "parameter 'quantile' must be between 0 and 1, got 2.0"),
        ("dissociation", {"quantile": "-0.1"}, "parameter 'quantile' must be between 0 and 1, got -0.1"),
        ("dissociation", {"quantile": "nan"}, "parameter 'quantile' must be a finite number, got 'nan'"),
        ("dissociation", {"quantile": "inf"}, "parameter 'quantile' must be a finite number"),
        ("token_localisation", {"group_by": "bogus"}, "parameter 'group_by' must be one of kind, word; got 'bogus'"),
        ("temporal_drift", {"group_by": "kind"}, "must be one of question_type, answer_type; got 'kind'"),
        ("temporal_drift", {"include_eos": "maybe"}, "parameter 'include_eos' must be bool, got 'maybe'"),
        ("token_localisation", {"min_count": 0}, "parameter 'min_count' must be >= 1, got 0"),
        ("question_type_regions", {"per_perturbation": -5}, "must be >= 1, got -5"),
        ("faithfulness_by_question_type", {"min_examples": 0}, "must be >= 1, got 0"),
        ("wrong_answer_regions", {"limit": -1}, "must be >= 1"),
        ("run_examples", {"limit": 0}, "must be >= 1"),
        ("example_links", {}, "parameter 'example_id' is required"),
    ],
)
def test_bad_values_are_refused_in_one_line_before_the_query_runs(name, values, message):
    lib = QueryLibrary(NoServer(), notice=lambda line: None)
    with pytest.raises(StcgError) as e:
        lib.run(name, **values)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_valid_edge_values_pass():
    for name, values in [
        ("dissociation", {"quantile": "0"}),
        ("dissociation", {"quantile": 1}),
        ("runs", {"limit": 2**63 - 1}),
        ("token_localisation", {"group_by": "word", "limit": "1"}),
    ]:
        load_template(name).bind(**values)


def test_cli_refuses_bad_values_before_connecting():
    env = {**os.environ, "NEO4J_URI": "bolt://127.0.0.1:1"}  # nothing listens: an error about it would mean it tried
    for args, line in [
        (["dissociation", "-p", "quantile=2"], "error: parameter 'quantile' must be between 0 and 1, got 2.0"),
        (["flips", "-p", "limit=-1"], "error: parameter 'limit' must be >= 1, got -1"),
        (
            ["token_localisation", "-p", "group_by=bogus"],
            "error: parameter 'group_by' must be one of kind, word; got 'bogus'",
        ),
        (
            ["runs", "-p", "limit=9223372036854775808"],
            "error: parameter 'limit' must be a 64-bit integer, got '9223372036854775808'",
        ),
    ]:
        res = subprocess.run(
            [sys.executable, "-m", "stcg_cli.main", "query", "run", *args], capture_output=True, text=True, env=env
        )
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [line], res.stderr


def test_browser_param_lines_are_literals_ending_in_semicolons():
    t = load_template("token_localisation")
    lines = t.browser_params({"limit": 7}).splitlines()
    assert lines == [
        ":param run_id => null;",
        ':param group_by => "kind";',
        ":param min_count => 5;",
        ":param limit => 7;",
    ]
    assert load_template("dissociation").browser_params().splitlines()[1] == ":param quantile => 0.75;"
    assert load_template("example_links").browser_params().splitlines()[0] == ':param example_id => "<example_id>";'
    assert cypher_literal('say "hi"\\') == '"say \\"hi\\"\\\\"' and cypher_literal(True) == "true"
    assert ":params" not in load_template("flips").browser_text()


def test_server_errors_become_one_line(driver):
    lib = QueryLibrary(driver)
    t = Template.parse("boom", "// name: boom\n// param: d int = 0 [0..]\nRETURN 1 / $d AS v\n")
    with pytest.raises(StcgError) as e:
        lib._execute(t, t.bind())
    msg = str(e.value)
    assert msg.startswith("template 'boom' failed on the server: / by zero") and "\n" not in msg
    assert "Neo.ClientError" in msg
