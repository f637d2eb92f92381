"""`stcg neo4j start | status | stop` against a second real server on free loopback ports.

The server is started as on a fresh clone: no NEO4J_PASSWORD, so the new home gets a generated
password in <home>/stcg-password (tests/test_server_security.py checks that file and the rest).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from neo4j import GraphDatabase


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stcg(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("NEO4J_PASSWORD", "STCG_NEO4J_HOME", "NEO4J_URI")}
    full_env = {**base, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.fixture
def server_args(tmp_path):
    args = [
        "--home",
        str(tmp_path / "neo4j"),
        "--bolt-port",
        str(_free_port()),
        "--http-port",
        str(_free_port()),
        "--heap",
        "384m",
        "--pagecache",
        "64m",
    ]
    yield args
    stcg("neo4j", "stop", *args)  # never leave a server behind, whatever failed


def test_start_status_idempotent_start_stop(server_args):
    bolt_port = server_args[server_args.index("--bolt-port") + 1]
    http_port = server_args[server_args.index("--http-port") + 1]

    st = stcg("neo4j", "status", *server_args)
    assert st.returncode == 3 and "not running" in st.stdout

    first = stcg("neo4j", "start", *server_args)
    assert first.returncode == 0, first.stderr
    assert f"bolt://127.0.0.1:{bolt_port}" in first.stdout and "is running" in first.stdout
    password_file = Path(server_args[server_args.index("--home") + 1]) / "stcg-password"
    assert f"password in {password_file}" in first.stdout
    password = password_file.read_text().strip()

    st = stcg("neo4j", "status", *server_args)
    assert st.returncode == 0 and "is running" in st.stdout and f"127.0.0.1:{http_port}/browser/" in st.stdout

    again = stcg("neo4j", "start", *server_args)
    assert again.returncode == 0 and "already running" in again.stdout

    with GraphDatabase.driver(f"bolt://127.0.0.1:{bolt_port}", auth=("neo4j", password)) as d:
        d.execute_query("CREATE (:Probe {v: $v})", v=42)
        records, _, _ = d.execute_query("MATCH (p:Probe) RETURN p.v AS v")
        assert [r["v"] for r in records] == [42]
        version = d.get_server_info().agent
    assert version.startswith("Neo4j/5.26")

    import urllib.request

    page = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/browser/", timeout=10).read().decode()
    assert "Neo4j Browser" in page

    stop = stcg("neo4j", "stop", *server_args)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    st = stcg("neo4j", "status", *server_args)
    assert st.returncode == 3
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(bolt_port))) != 0, "Bolt still answers after stop"
    assert "not running" in stcg("neo4j", "stop", *server_args).stdout  # stopping twice is harmless


def test_taken_port_is_one_clear_line(server_args):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        args = list(server_args)
        args[args.index("--bolt-port") + 1] = str(port)
        res = stcg("neo4j", "start", *args)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0]
    assert "Traceback" not in res.stderr


def test_missing_java_is_one_clear_line(server_args):
    res = stcg("neo4j", "start", *server_args, env={"JAVA_HOME": "/nonexistent/jdk"})
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [
        "error: JAVA_HOME=/nonexistent/jdk has no bin/java; install Java 17+ or fix JAVA_HOME"
    ]


def test_missing_maven_is_one_clear_line(server_args, tmp_path):
    java_home = os.path.realpath(
        subprocess.run(["bash", "-c", "readlink -f $(which java)"], capture_output=True, text=True).stdout.strip()
    ).rsplit("/bin/java", 1)[0]
    empty_cache = tmp_path / "empty-cache"
    res = stcg(
        "neo4j",
        "start",
        *server_args,
        "--cache",
        str(empty_cache),
        env={"JAVA_HOME": java_home, "PATH": os.path.dirname(sys.executable)},
    )
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Maven (mvn) not found" in lines[0]
