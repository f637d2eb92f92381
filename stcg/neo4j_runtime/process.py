"""Process and file facts the local server's lifecycle reads: its status (``ServerStatus``), a port in use,
a live (non-zombie) pid, our server's command line, owner-only writes, and Neo4j's initial-auth file."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from stcg.config import password_file
from stcg.neo4j_runtime.install import MAIN_CLASS, NEO4J_VERSION


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    bolt_uri: str
    http_uri: str | None
    home: Path
    detail: str = ""

    def describe(self) -> str:
        if not self.running:
            return f"Neo4j is not running ({self.detail or 'no server'}; home {self.home})"
        parts = [f"Neo4j {NEO4J_VERSION} is running (pid {self.pid})", f"bolt {self.bolt_uri}"]
        if self.http_uri:
            parts.append(f"browser {self.http_uri}/browser/")
        parts.append(f"home {self.home}")
        if password_file(self.home).is_file():
            parts.append(f"password in {password_file(self.home)}")
        return ", ".join(parts)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def auth_ini_matches(path: Path, password: str, user: str = "neo4j") -> bool:
    """True when Neo4j's initial-auth file holds ``password`` for ``user``.

    Format (``neo4j-admin dbms set-initial-password``): ``user:SHA-256,<hash hex>,<salt hex>,<iterations>:``
    with hash = SHA-256 iterated ``iterations`` times, starting from salt + UTF-8 password.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        name, _, rest = line.partition(":")
        if name != user:
            continue
        algorithm, digest, salt, iterations = rest.split(":", 1)[0].split(",")
        if algorithm != "SHA-256":
            return False
        h = hashlib.sha256(bytes.fromhex(salt) + password.encode()).digest()
        for _ in range(int(iterations) - 1):
            h = hashlib.sha256(h).digest()
        return h.hex() == digest.lower()
    return False


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, owner-only (0600) whatever the file was before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def is_our_server(pid: int, home: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return pid_alive(pid)
    return MAIN_CLASS in cmdline and str(home) in cmdline
