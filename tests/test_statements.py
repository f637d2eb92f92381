"""The write side's fixed statements are files (``ingest/cypher/``), like the read side's templates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ingest.statements import statement, statement_names
from stcg.errors import StcgError

ROOT = Path(__file__).resolve().parents[1]


def referenced() -> set[str]:
    """Names passed as literals to ``statement(...)`` anywhere in ``ingest/``."""
    names = set()
    for path in (ROOT / "ingest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "statement"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_statement_the_code_names_is_a_file_and_every_file_is_used():
    assert referenced() == set(statement_names())


@pytest.mark.parametrize("name", statement_names())
def test_statements_are_parameterised_cypher_without_their_comment_header(name):
    text = statement(name)
    assert text.strip() and not text.lstrip().startswith("//")
    assert "{}" not in text and "%s" not in text  # nothing is formatted into them
    header = (ROOT / "ingest" / "cypher" / f"{name}.cypher").read_text().splitlines()[0]
    assert header.startswith(f"// {name}: ")  # each file says what it does


def test_an_unknown_statement_is_a_one_line_error():
    with pytest.raises(StcgError, match="no write statement 'nope'"):
        statement("nope")
