"""Security of `stcg neo4j start` (issue 17): generated password, owner-only home, CORS, no password on a command line.

Real servers on free loopback ports, each with its own home: one server (generated password)
shared by the module, and one home created with NEO4J_PASSWORD for the no-password-file paths.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

from stcg.config import Neo4jSettings
from stcg.errors import StcgError

OLD_PUBLIC_PASSWORD = "stcg-local-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stcg(*args: str, password: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI with NEO4J_PASSWORD set to ``password`` (unset when None, whatever the caller's shell has)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEO4J_PASSWORD", "STCG_NEO4J_HOME", "NEO4J_URI")}
    if password is not None:
        env["NEO4J_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _server_args(home: Path, bolt: int, http: int) -> list[str]:
    return [
        "--home",
        str(home),
        "--bolt-port",
        str(bolt),
        "--http-port",
        str(http),
        "--heap",
        "384m",
        "--pagecache",
        "64m",
    ]


class CmdlineWatcher(threading.Thread):
    """Records every distinct process command line on this machine while it runs (polls /proc)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if raw:
                        self.seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))
            time.sleep(0.01)

    def stop(self) -> set[str]:
        self.done.set()
        self.join()
        return self.seen


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A new home started once with no NEO4J_PASSWORD, every command line seen during that start."""
    home = tmp_path_factory.mktemp("security") / "neo4j"
    bolt, http = _free_port(), _free_port()
    args = _server_args(home, bolt, http)
    watcher = CmdlineWatcher()
    watcher.start()
    try:
        started = stcg("neo4j", "start", *args)
    finally:
        cmdlines = watcher.stop()
    yield {"home": home, "args": args, "bolt": bolt, "http": http, "started": started, "cmdlines": cmdlines}
    stcg("neo4j", "stop", *args)


def _password(fresh) -> str:
    return (fresh["home"] / "stcg-password").read_text().strip()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_home_gets_a_random_password_in_an_owner_only_file(fresh):
    assert fresh["started"].returncode == 0, fresh["started"].stderr
    pw_file = fresh["home"] / "stcg-password"
    assert pw_file.is_file() and _mode(pw_file) == 0o600
    password = _password(fresh)
    assert len(password) >= 24 and password != OLD_PUBLIC_PASSWORD
    assert str(pw_file) in fresh["started"].stdout  # said once where it is
    uri = f"bolt://127.0.0.1:{fresh['bolt']}"
    with GraphDatabase.driver(uri, auth=("neo4j", password)) as d:
        d.verify_connectivity()
    with pytest.raises(AuthError), GraphDatabase.driver(uri, auth=("neo4j", OLD_PUBLIC_PASSWORD)) as d:
        d.verify_connectivity()
    again = stcg("neo4j", "start", *fresh["args"])
    assert again.returncode == 0 and "already running" in again.stdout and "generated" not in again.stdout
    assert _password(fresh) == password


def test_settings_find_the_generated_password_for_the_local_server_only(fresh):
    from stcg.db import connect

    env = {"STCG_NEO4J_HOME": str(fresh["home"]), "NEO4J_URI": f"bolt://127.0.0.1:{fresh['bolt']}"}
    settings = Neo4jSettings.from_env(env)
    assert settings.password == _password(fresh)
    with connect(settings) as driver:
        records, _, _ = driver.execute_query("RETURN 1 AS one")
        assert records[0]["one"] == 1
    assert Neo4jSettings.from_env({**env, "NEO4J_URI": f"neo4j://localhost:{fresh['bolt']}"}).password == _password(
        fresh
    )
    # the local password is never sent elsewhere: another host, or another port on loopback
    for uri in ("bolt://db.example.com:7687", f"bolt://127.0.0.1:{fresh['http']}"):
        remote = Neo4jSettings.from_env({**env, "NEO4J_URI": uri})
        assert remote.password is None
        with pytest.raises(StcgError, match="NEO4J_PASSWORD is not set") as err:
            remote.resolve_password()
        assert "\n" not in str(err.value)
    # a user-set NEO4J_PASSWORD wins
    assert Neo4jSettings.from_env({**env, "NEO4J_PASSWORD": "mine-12345"}).password == "mine-12345"


def test_home_data_and_logs_are_owner_only(fresh):
    home = fresh["home"]
    for sub in ("", "conf", "data", "logs", "run", "data/dbms", "data/databases"):
        assert _mode(home / sub) == 0o700, sub
    for name in ("stcg-password", "conf/neo4j.conf", "data/dbms/auth.ini", "logs/neo4j.log", "logs/debug.log"):
        assert _mode(home / name) == 0o600, name
    loose = [str(p) for p in home.rglob("*") if not p.is_symlink() and _mode(p) & 0o077]
    assert loose == [], "group/other may read these"


def test_cross_origin_requests_get_no_access(fresh):
    http = f"http://127.0.0.1:{fresh['http']}"
    evil = "http://evil.example"
    preflight = urllib.request.Request(
        f"{http}/db/neo4j/tx/commit",
        method="OPTIONS",
        headers={
            "Origin": evil,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(preflight, timeout=10) as r:
        allowed = r.headers.get("Access-Control-Allow-Origin")
    assert allowed not in ("*", evil) and allowed == http
    with urllib.request.urlopen(urllib.request.Request(f"{http}/", headers={"Origin": evil}), timeout=10) as r:
        assert r.headers.get("Access-Control-Allow-Origin") not in ("*", evil)
        discovery = r.read().decode()
    # Browser's connect form is filled from discovery: it must name this server's Bolt port
    assert f"127.0.0.1:{fresh['bolt']}" in discovery


def test_password_never_on_a_command_line(fresh):
    password = _password(fresh)
    seen = fresh["cmdlines"]
    assert any("org.neo4j.cli.AdminTool" in c and "set-initial-password" in c for c in seen), "admin tool not seen"
    assert any("org.neo4j.server.CommunityEntryPoint" in c for c in seen)
    assert not [c for c in seen if password in c]
    assert password not in (fresh["home"] / "conf" / "neo4j.conf").read_text()
    assert not list((fresh["home"] / "run").glob(".initial-password-*")), "the argument file is left behind"


def test_admin_tool_stores_any_one_line_password_exactly(tmp_path):
    from stcg.neo4j_runtime.server import LocalNeo4j, auth_ini_matches

    server = LocalNeo4j(home=tmp_path / "neo4j", password="x")
    server.ensure_artifacts(log=lambda s: None)
    server._make_home()
    server._write_conf()
    auth = tmp_path / "neo4j" / "data" / "dbms" / "auth.ini"
    # a leading '-' (1 in 64 generated passwords: token_urlsafe) once read as an option of the admin tool
    for tricky in ("a b\"c'd\\e #f @g $h ;i", "-wO-leading-dash", "--help-me-now"):
        auth.unlink(missing_ok=True)
        server._set_initial_password(server.java(), tricky)
        assert auth_ini_matches(auth, tricky) and not auth_ini_matches(auth, tricky + " "), tricky
        assert _mode(auth) == 0o600


def test_wrong_password_is_refused_and_the_running_server_left_alone(fresh):
    pid_before = (fresh["home"] / "run" / "stcg-neo4j.pid").read_text()
    res = stcg("neo4j", "start", *fresh["args"], password="not-the-home-password")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "NEO4J_PASSWORD" in lines[0] and str(fresh["home"] / "stcg-password") in lines[0]
    assert "Traceback" not in res.stderr
    st = stcg("neo4j", "status", *fresh["args"])
    assert st.returncode == 0 and (fresh["home"] / "run" / "stcg-neo4j.pid").read_text() == pid_before


def test_wrong_password_is_refused_before_a_stopped_server_starts(fresh):
    assert stcg("neo4j", "stop", *fresh["args"]).returncode == 0
    t0 = time.monotonic()
    res = stcg("neo4j", "start", *fresh["args"], password="not-the-home-password")
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
    assert "Starting" not in res.stdout and time.monotonic() - t0 < 15
    assert stcg("neo4j", "status", *fresh["args"]).returncode == 3
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", fresh["bolt"])) != 0


def test_home_created_with_neo4j_password(tmp_path):
    """NEO4J_PASSWORD-made homes (and homes from before generated passwords) have no password file."""
    home = tmp_path / "neo4j"
    bolt, http = _free_port(), _free_port()
    args = _server_args(home, bolt, http)
    chosen = "chosen-password-123"
    try:
        first = stcg("neo4j", "start", *args, password=chosen)
        assert first.returncode == 0, first.stderr
        assert not (home / "stcg-password").exists()
        env = {"STCG_NEO4J_HOME": str(home), "NEO4J_URI": f"bolt://127.0.0.1:{bolt}"}
        with pytest.raises(StcgError, match="NEO4J_PASSWORD") as err:
            Neo4jSettings.from_env(env).resolve_password()
        assert str(home) in str(err.value) and "\n" not in str(err.value)
        assert Neo4jSettings.from_env({**env, "NEO4J_PASSWORD": chosen}).password == chosen
        assert stcg("neo4j", "stop", *args).returncode == 0

        wrong = stcg("neo4j", "start", *args, password="another-password-456")  # checked by logging in
        assert wrong.returncode != 0
        lines = wrong.stderr.strip().splitlines()
        assert len(lines) == 1 and "rejected" in lines[0] and "stopped again" in lines[0]
        assert stcg("neo4j", "status", *args).returncode == 3

        none = stcg("neo4j", "start", *args)
        assert none.returncode != 0 and "Starting" not in none.stdout
        lines = none.stderr.strip().splitlines()
        assert len(lines) == 1 and "set NEO4J_PASSWORD" in lines[0] and str(home) in lines[0]
    finally:
        stcg("neo4j", "stop", *args)
