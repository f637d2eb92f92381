"""The CLI tree: every command has --help that explains itself; --version works."""

from __future__ import annotations

import click
from click.testing import CliRunner

from stcg import __version__
from stcg_cli.main import cli


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, prefix + (name,))


def test_every_command_has_help():
    runner = CliRunner()
    paths = list(_walk(cli))
    assert {("neo4j", "start"), ("neo4j", "status"), ("neo4j", "stop"), ("demo",), ("init-db",)} <= {
        p for p, _ in paths
    }
    for path, cmd in paths:
        res = runner.invoke(cli, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage: " in res.output and " ".join(path) in res.output
        assert cmd.help and len(cmd.help.strip()) > 20, f"{path} needs a real help text"


def test_version():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_unreachable_database_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEO4J_URI": "bolt://127.0.0.1:1"}
    res = subprocess.run([sys.executable, "-m", "stcg_cli.main", "init-db"], capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: Neo4j is not reachable at bolt://127.0.0.1:1 (ServiceUnavailable); start it with `stcg neo4j start` "
        "or point NEO4J_URI at a running server"
    ]


def test_non_bolt_uri_is_one_line_before_any_work():
    import os
    import subprocess
    import sys

    for args in (
        ["query", "run", "runs", "--uri", "http://127.0.0.1:7474"],
        ["init-db", "--uri", "https://db.example"],
    ):
        res = subprocess.run(
            [sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, env=dict(os.environ)
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not a Bolt URI" in lines[0] and "bolt://" in lines[0], lines
        assert "Traceback" not in res.stderr
