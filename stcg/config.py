"""Connection settings, read the Neo4j way from environment variables.

| variable          | default                                                          |
|-------------------|------------------------------------------------------------------|
| NEO4J_URI         | bolt://127.0.0.1:7687                                            |
| NEO4J_USERNAME    | neo4j                                                            |
| NEO4J_PASSWORD    | the local server's generated password (``<home>/stcg-password``) |
| NEO4J_DATABASE    | neo4j                                                            |

``stcg neo4j start`` gives each new server home a random password, kept in the owner-only file
``<home>/stcg-password`` (home: STCG_NEO4J_HOME, default ``./.stcg/neo4j``). When NEO4J_PASSWORD is
unset, that file is read, but only for a URI naming that local server (a loopback host and the
home's Bolt port): the local password is never sent anywhere else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from stcg.errors import StcgError

DEFAULT_URI = "bolt://127.0.0.1:7687"
DEFAULT_USERNAME = "neo4j"
DEFAULT_DATABASE = "neo4j"
DEFAULT_BOLT_PORT = 7687
PASSWORD_FILE = "stcg-password"  # inside the server home, mode 0600
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_BOLT_LISTEN = re.compile(r"^server\.bolt\.listen_address=.*:(\d+)\s*$", re.M)


def local_home(env: dict[str, str] | None = None) -> Path:
    """The local server home: STCG_NEO4J_HOME, default ``./.stcg/neo4j`` (absolute)."""
    env = os.environ if env is None else env
    return Path(env.get("STCG_NEO4J_HOME") or Path.cwd() / ".stcg" / "neo4j").resolve()


def password_file(home: Path) -> Path:
    return Path(home) / PASSWORD_FILE


def read_password_file(home: Path) -> str | None:
    """The password kept in ``home`` (None when the home has no password file)."""
    try:
        return password_file(home).read_text().rstrip("\r\n") or None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StcgError(f"cannot read the Neo4j password file {password_file(home)}: {e.strerror}") from None


def home_initialised(home: Path) -> bool:
    """True once a server home has its initial auth or its system database."""
    home = Path(home)
    return (home / "data" / "dbms" / "auth.ini").exists() or (home / "data" / "databases" / "system").exists()


def home_bolt_port(home: Path) -> int:
    """The Bolt port the home's ``conf/neo4j.conf`` listens on (7687 when there is none)."""
    try:
        m = _BOLT_LISTEN.search((Path(home) / "conf" / "neo4j.conf").read_text())
    except OSError:
        return DEFAULT_BOLT_PORT
    return int(m.group(1)) if m else DEFAULT_BOLT_PORT


def names_local_server(uri: str, home: Path) -> bool:
    """True when ``uri`` is the local server of ``home``: bolt/neo4j on a loopback host and its Bolt port."""
    try:
        parts = urlsplit(uri)
        port = parts.port or DEFAULT_BOLT_PORT
    except ValueError:
        return False
    return parts.scheme in ("bolt", "neo4j") and parts.hostname in _LOOPBACK and port == home_bolt_port(home)


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str = DEFAULT_URI
    username: str = DEFAULT_USERNAME
    password: str | None = field(default=None, repr=False)
    database: str = DEFAULT_DATABASE
    home: Path | None = None  # the local server home (STCG_NEO4J_HOME); its password file serves only its own URI

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: str | None) -> Neo4jSettings:
        """Settings from ``env`` (default ``os.environ``); non-None ``overrides`` win.

        The password is ``password=`` or NEO4J_PASSWORD, else (local URI only) the local home's
        password file, read now or, if it does not exist yet, when a connection is opened.
        """
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}
        uri = given.get("uri") or env.get("NEO4J_URI") or DEFAULT_URI
        home = local_home(env)
        password = given.get("password") or env.get("NEO4J_PASSWORD") or None
        if password is None and names_local_server(uri, home):
            password = read_password_file(home)
        return cls(
            uri=uri,
            username=given.get("username") or env.get("NEO4J_USERNAME") or env.get("NEO4J_USER") or DEFAULT_USERNAME,
            password=password,
            database=given.get("database") or env.get("NEO4J_DATABASE") or DEFAULT_DATABASE,
            home=home,
        )

    @property
    def local_home(self) -> Path | None:
        """The home whose password file applies: ``home`` when ``uri`` names its server (checked now: a
        home's Bolt port is known once ``stcg neo4j start`` has written its conf)."""
        return self.home if self.home is not None and names_local_server(self.uri, self.home) else None

    def resolve_password(self) -> str:
        """The password to send; one-line ``StcgError`` saying where it is expected when there is none."""
        if self.password:
            return self.password
        home = self.local_home
        if home is None:
            raise StcgError(
                f"NEO4J_PASSWORD is not set: set it to the password of the Neo4j server at {self.uri} "
                "(<STCG_NEO4J_HOME>/stcg-password is only read for a loopback URI on that home's Bolt port)"
            )
        found = read_password_file(home)
        if found:
            return found
        where = password_file(home)
        if home_initialised(home):
            raise StcgError(
                f"the Neo4j home {home} has no password file {where} (it was created with NEO4J_PASSWORD "
                "or before stcg generated passwords): set NEO4J_PASSWORD to its password"
            )
        raise StcgError(
            f"no Neo4j password: NEO4J_PASSWORD is unset and {where} does not exist; run `stcg neo4j start` "
            "(a new server home gets a generated password there) or set NEO4J_PASSWORD"
        )

    def password_source(self) -> str:
        """Where the password comes from, for messages (never the password itself)."""
        home = self.local_home
        if home is not None and self.password in (None, read_password_file(home)):
            return str(password_file(home))
        return "NEO4J_PASSWORD"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.resolve_password())

    def redacted(self) -> str:
        return f"{self.uri} (user {self.username}, database {self.database})"
