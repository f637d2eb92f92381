"""docker-compose.yml: validated by docker compose when present, and checked for what users rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose_cmd() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError("no docker compose / docker-compose found: .ci/run installs Debian's docker-compose")


def test_compose_file_validates_with_compose():
    cmd = _compose_cmd() + [
        "-f",
        str(ROOT / "docker-compose.yml"),
        "--env-file",
        str(ROOT / ".env.example"),
        "config",
        "-q",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_password(tmp_path):
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    cmd = _compose_cmd() + ["-f", str(ROOT / "docker-compose.yml"), "--env-file", str(empty_env), "config", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "NEO4J_PASSWORD" in (proc.stderr + proc.stdout)


def test_compose_neo4j_service_shape():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    neo = doc["services"]["neo4j"]
    assert neo["image"] == "neo4j:5.26-community"
    assert all(str(p).startswith("127.0.0.1:") for p in neo["ports"]), "ports must be published on loopback only"
    assert {"test", "interval"} <= set(neo["healthcheck"])
    assert {v.split(":")[0] for v in neo["volumes"]} == {"neo4j-data", "neo4j-logs"}
    assert set(doc["volumes"]) == {"neo4j-data", "neo4j-logs"}
    env = neo["environment"]
    assert "NEO4J_PASSWORD" in env["NEO4J_AUTH"] and "heap" in " ".join(env).lower()
    example = (ROOT / ".env.example").read_text()
    assert "NEO4J_PASSWORD=" in example


def test_compose_neo4j_security_and_browser_settings():
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["neo4j"]["environment"]
    origin = env["NEO4J_dbms_security_http__access__control__allow__origin"]
    assert origin.startswith("http://127.0.0.1:") and "*" not in origin  # Neo4j's default is *
    assert env["NEO4J_browser_post__connect__cmd"] == "config autoComplete: false"
    assert env["NEO4J_client_allow__telemetry"] == "false"
