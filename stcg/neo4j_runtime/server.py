"""A local Neo4j Community server, started from Maven Central jars.

Route: ``org.neo4j:neo4j`` + ``org.neo4j.app:neo4j-server`` (+ ``org.neo4j.client:neo4j-browser``)
resolved by Maven into a cache folder, then ``java -cp 'lib/*' org.neo4j.server.CommunityEntryPoint``
— the same entry point, jars and configuration file as the official tarball, so Bolt, HTTP and
Neo4j Browser all behave as in a packaged server.

Security of the local server: a new home gets a random password (or NEO4J_PASSWORD when set), set
with Neo4j's own ``neo4j-admin dbms set-initial-password`` (``org.neo4j.cli.AdminTool``) reading it
from an owner-only argument file (``@file``), never from a command line. The home is owner-only
(0700 directories, 0600 files: the server runs under umask 077), HTTP answers cross-origin requests
only for the Browser's own origin, and everything listens on 127.0.0.1.

Layout of ``home`` (project-local, default ``./.stcg/neo4j``)::

    stcg-password     the generated password (0600); absent when the home was made with NEO4J_PASSWORD
    conf/neo4j.conf   written on every start from the options below
    data/ logs/ run/  server state, logs, pid file
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stcg.config import home_initialised, local_home, password_file, read_password_file
from stcg.errors import StcgError
from stcg.neo4j_runtime.browser import post_connect_cmd
from stcg.neo4j_runtime.install import (  # noqa: F401  (versions and classes re-exported)
    ADMIN_CLASS,
    BROWSER_VERSION,
    MAIN_CLASS,
    MIN_JAVA,
    NEO4J_VERSION,
    artifacts_ready,
    default_cache,
    fetch_artifacts,
    find_java,
)
from stcg.neo4j_runtime.process import (
    ServerStatus,
    auth_ini_matches,
    is_our_server,
    pid_alive,
    port_in_use,
    write_private,
)

_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
]


UMASK = 0o077  # what the server and the admin tool create is owner-only
HOME_DIRS = ("conf", "data", "logs", "run", "import", "plugins")


def default_home() -> Path:
    return local_home()


class LocalNeo4j:
    """One Neo4j server bound to 127.0.0.1, its state in ``home``, its jars in ``cache``.

    ``password`` (else NEO4J_PASSWORD) is the password a new home is initialised with and that an
    existing one must have; when neither is given, a new home gets a random one kept in
    ``<home>/stcg-password`` and an existing home's file is used.
    """

    def __init__(
        self,
        home: Path | str | None = None,
        cache: Path | str | None = None,
        bolt_port: int = 7687,
        http_port: int = 7474,
        password: str | None = None,
        heap: str = "1g",
        pagecache: str = "512m",
    ):
        self.home = Path(home or default_home()).resolve()
        self.cache = Path(cache or default_cache()).resolve()
        self.bolt_port = int(bolt_port)
        self.http_port = int(http_port)
        self.given_password = password or os.environ.get("NEO4J_PASSWORD") or None
        self.heap = heap
        self.pagecache = pagecache
        self.host = "127.0.0.1"

    # ----------------------------------------------------------------- paths
    @property
    def lib(self) -> Path:
        return self.cache / "lib"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "stcg-neo4j.pid"

    @property
    def password_file(self) -> Path:
        return password_file(self.home)

    @property
    def password(self) -> str | None:
        """The password this object uses: the given one, else the home's password file (None if neither)."""
        return self.given_password or read_password_file(self.home)

    @property
    def bolt_uri(self) -> str:
        return f"bolt://{self.host}:{self.bolt_port}"

    @property
    def http_uri(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    # ----------------------------------------------------------------- tools
    def java(self) -> str:
        """Path of a Java >= 17 executable (JAVA_HOME first, then PATH)."""
        return find_java()

    def artifacts_ready(self) -> bool:
        return artifacts_ready(self.cache)

    def ensure_artifacts(self, log=print) -> Path:
        """Resolve the server jars with Maven into ``cache/lib`` once; later calls are free."""
        return fetch_artifacts(self.cache, log)

    # ----------------------------------------------------------------- config
    def _make_home(self) -> None:
        """Create the home and its folders owner-only (0700), tightening existing ones."""
        self.home.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        self.home.chmod(0o700)
        for sub in HOME_DIRS:
            (self.home / sub).mkdir(mode=0o700, exist_ok=True)
            (self.home / sub).chmod(0o700)

    def conf_text(self) -> str:
        """The ``neo4j.conf`` this server runs with (it never contains the password)."""
        return f"""# Written by `stcg neo4j start`; edits are overwritten on the next start.
server.default_listen_address={self.host}
server.default_advertised_address={self.host}
server.bolt.enabled=true
server.bolt.listen_address={self.host}:{self.bolt_port}
server.bolt.advertised_address={self.host}:{self.bolt_port}
server.http.enabled=true
server.http.listen_address={self.host}:{self.http_port}
server.http.advertised_address={self.host}:{self.http_port}
server.https.enabled=false
dbms.security.auth_enabled=true
# HTTP answers cross-origin requests only for the Browser served here (Neo4j's default is *)
dbms.security.http_access_control_allow_origin={self.http_uri}
# Neo4j Browser on connect: no "connect result nodes", the STCG style (docs/browser.grass)
browser.post_connect_cmd={post_connect_cmd()}
server.directories.data={self.home / "data"}
server.directories.logs={self.home / "logs"}
server.directories.run={self.home / "run"}
server.directories.import={self.home / "import"}
server.directories.plugins={self.home / "plugins"}
server.memory.heap.initial_size={self.heap}
server.memory.heap.max_size={self.heap}
server.memory.pagecache.size={self.pagecache}
db.tx_log.rotation.retention_policy=1G size
dbms.usage_report.enabled=false
client.allow_telemetry=false
"""

    def _write_conf(self) -> None:
        write_private(self.home / "conf" / "neo4j.conf", self.conf_text())

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NEO4J_PASSWORD", None)  # the server and the admin tool never need it
        env["NEO4J_HOME"] = str(self.home)
        env["NEO4J_CONF"] = str(self.home / "conf")
        return env

    def _initialised(self) -> bool:
        return home_initialised(self.home)

    def _write_password_file(self, password: str) -> str:
        """Keep a generated password in ``<home>/stcg-password`` (0600); an existing file wins."""
        try:
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return read_password_file(self.home) or password
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password

    def admin_command(self, java: str, argfile: Path) -> list[str]:
        """``neo4j-admin dbms set-initial-password`` reading the password from ``argfile`` (picocli ``@file``)."""
        return [
            java,
            "-cp",
            f"{self.lib}/*",
            f"-Dneo4j.home={self.home}",
            ADMIN_CLASS,
            "dbms",
            "set-initial-password",
            "--",  # end of options: a password that starts with '-' is the positional argument, not an option
            f"@{argfile}",
        ]

    def _set_initial_password(self, java: str, password: str) -> None:
        if len(password) < 8:
            raise StcgError("NEO4J_PASSWORD must have at least 8 characters (Neo4j's minimum)")
        if "\n" in password or "\r" in password or "\0" in password:
            raise StcgError("NEO4J_PASSWORD must be one line")
        # picocli reads one argument from the file: double-quoted, backslash and quote escaped
        quoted = '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"\n'
        fd, name = tempfile.mkstemp(prefix=".initial-password-", dir=self.home / "run")  # mode 0600
        argfile = Path(name)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(quoted)
            proc = subprocess.run(
                self.admin_command(java, argfile),
                capture_output=True,
                text=True,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                umask=UMASK,
            )
        finally:
            argfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StcgError(
                f"could not set the initial Neo4j password: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}"
            )
        if not auth_ini_matches(self.home / "data" / "dbms" / "auth.ini", password):
            (self.home / "data" / "dbms" / "auth.ini").unlink(missing_ok=True)
            raise StcgError("Neo4j's admin tool stored another password than NEO4J_PASSWORD; choose a simpler one")

    # ----------------------------------------------------------------- lifecycle
    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) and is_our_server(pid, self.home) else None

    def _auth(self, password: str, timeout: float = 5.0) -> bool | None:
        """True: Bolt accepts ``password``; False: it rejects it; None: no answer (yet)."""
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError

        try:
            with GraphDatabase.driver(self.bolt_uri, auth=("neo4j", password), connection_timeout=timeout) as d:
                d.verify_connectivity()
                return True
        except AuthError:
            return False
        except Exception:
            return None

    def bolt_answers(self, timeout: float = 5.0) -> bool:
        """True when a Bolt handshake and an authenticated query succeed (StcgError if the password is wrong)."""
        ok = self._auth(self._password_or_explain(), timeout)
        if ok is False:
            raise StcgError(self._rejected("it is running"))
        return bool(ok)

    def _password_source(self) -> str:
        return "NEO4J_PASSWORD" if self.given_password else str(self.password_file)

    def _rejected(self, state: str) -> str:
        return (
            f"Neo4j at {self.bolt_uri} rejected the password from {self._password_source()}: the home {self.home} "
            f"was initialised with another one; set NEO4J_PASSWORD to that one, or stop the server and delete "
            f"{self.home / 'data'} to start afresh ({state})"
        )

    def _password_or_explain(self) -> str:
        """The password to use for this home, checked against its password file; StcgError if none or a mismatch."""
        stored = read_password_file(self.home)
        if stored and self.given_password and self.given_password != stored:
            raise StcgError(
                f"NEO4J_PASSWORD differs from the password of the Neo4j home {self.home} (kept in "
                f"{self.password_file}): unset NEO4J_PASSWORD to use it, or choose another --home"
            )
        password = self.given_password or stored
        if password is None and self._initialised():
            raise StcgError(
                f"the Neo4j home {self.home} has no password file {self.password_file} (it was created with "
                "NEO4J_PASSWORD or before stcg generated passwords): set NEO4J_PASSWORD to its password"
            )
        if password is None:
            raise StcgError(f"no password for the new Neo4j home {self.home}")
        return password

    def status(self) -> ServerStatus:
        pid = self._read_pid()
        if pid is None:
            return ServerStatus(False, None, self.bolt_uri, None, self.home, "no server process")
        if not port_in_use(self.host, self.bolt_port):
            return ServerStatus(
                False, pid, self.bolt_uri, None, self.home, f"process {pid} is up but Bolt is not answering yet"
            )
        http = self.http_uri if port_in_use(self.host, self.http_port) else None
        return ServerStatus(True, pid, self.bolt_uri, http, self.home)

    def start(self, timeout: float = 180.0, log=print) -> ServerStatus:
        """Start the server (or find it running) and return once Bolt answers with the home's password.

        A password that is not the home's is refused in one line and the server is left as it was:
        checked against ``<home>/stcg-password`` before anything starts, else by logging in once Bolt
        answers (a server started for that check is stopped again).
        """
        current = self.status()
        if current.running:
            if self._auth(self._password_or_explain()) is False:
                raise StcgError(self._rejected("it was left running"))
            log(f"already running: {current.describe()}")
            return current
        java = self.java()
        if current.pid is None:
            for port, what in ((self.bolt_port, "Bolt"), (self.http_port, "HTTP")):
                if port_in_use(self.host, port):
                    raise StcgError(
                        f"port {port} on {self.host} ({what}) is already in use by another process; "
                        f"stop it or choose another port (--{what.lower()}-port)"
                    )
        self.ensure_artifacts(log=log)
        initialised = self._initialised()
        if initialised or self.given_password or self.password_file.exists():
            password = self._password_or_explain()  # refuses a mismatch before anything changes
            self._make_home()
        else:
            self._make_home()
            password = self._write_password_file(secrets.token_urlsafe(24))
            log(
                f"New Neo4j home: user neo4j has a generated password, kept in {self.password_file} (owner-only); "
                f"stcg commands read it from there, Neo4j Browser asks for it (cat {self.password_file})"
            )
        self._write_conf()
        if not initialised:
            self._set_initial_password(java, password)
        pid = current.pid
        started_here = pid is None
        if started_here:
            console_fd = os.open(self.home / "logs" / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            proc = subprocess.Popen(
                self.server_command(java),
                stdout=console_fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=self.home,
                start_new_session=True,
                umask=UMASK,
            )
            os.close(console_fd)
            pid = proc.pid
            write_private(self.pid_file, f"{pid}\n")
            log(f"Starting Neo4j {NEO4J_VERSION} (pid {pid}) on {self.bolt_uri} ...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise StcgError(f"Neo4j exited during start-up: {self._log_tail()}")
            if port_in_use(self.host, self.bolt_port):
                ok = self._auth(password)
                if ok is False:
                    if started_here:
                        self.stop(log=lambda _: None)
                        raise StcgError(self._rejected("it was stopped again"))
                    raise StcgError(self._rejected("it was left running"))
                if ok:
                    st = self.status()
                    log(st.describe())
                    return st
            time.sleep(0.5)
        raise StcgError(f"Neo4j did not answer on {self.bolt_uri} within {timeout:.0f} s; see {self.home / 'logs'}")

    def server_command(self, java: str) -> list[str]:
        """The command line of the server process (no password: it is in ``data/``, set by the admin tool)."""
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *_JVM_FLAGS,
            "-cp",
            f"{self.lib}/*",
            MAIN_CLASS,
            f"--home-dir={self.home}",
            f"--config-dir={self.home / 'conf'}",
        ]

    def stop(self, timeout: float = 60.0, log=print) -> bool:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``). False if none ran."""
        pid = self._read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            log(f"Neo4j is not running (home {self.home})")
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
        try:  # reap if it is our child (same process started it)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self.pid_file.unlink(missing_ok=True)
        log(f"Neo4j stopped (pid {pid})")
        return True

    def _log_tail(self, n: int = 3) -> str:
        for name in ("console.log", "neo4j.log", "debug.log"):
            p = self.home / "logs" / name
            if p.is_file():
                lines = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
                errs = [ln for ln in lines if "ERROR" in ln or "Exception" in ln] or lines
                if errs:
                    return " | ".join(errs[-n:])[:600]
        return "no log output"


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(LocalNeo4j().status().describe(), file=sys.stderr)
