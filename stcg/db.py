"""Open a Neo4j driver with one-line errors instead of tracebacks."""

from __future__ import annotations

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, ConfigurationError, ServiceUnavailable

from stcg.config import Neo4jSettings
from stcg.errors import StcgError

BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def check_uri(uri: str) -> str:
    """``uri`` if it names a Bolt endpoint; one-line ``StcgError`` otherwise (``http://`` included:
    the driver's HTTP mode needs extra packages and lacks the transactions the writer uses)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme not in BOLT_SCHEMES:
        hint = " (port 7474 serves Neo4j Browser; Bolt is on 7687)" if scheme in ("http", "https") else ""
        raise StcgError(
            f"NEO4J_URI {uri!r} is not a Bolt URI{hint}: use bolt://host:7687, neo4j://host, "
            "neo4j+s://host (Aura) or bolt+s://host"
        )
    return uri


def connect(settings: Neo4jSettings | None = None, timeout: float = 10.0) -> Driver:
    """A verified driver for ``settings`` (default: from the environment).

    Raises ``StcgError`` with a one-line reason when the server is down, the URI is malformed,
    the credentials are wrong, or the server wants a password and none is known (the message says
    where one is expected). Without a password, the server is tried without credentials, so a
    server that is down is reported as such, and one with auth disabled just works.
    """
    settings = settings or Neo4jSettings.from_env()
    check_uri(settings.uri)
    try:
        auth, missing = settings.auth, None
    except StcgError as e:
        auth, missing = None, e
    try:
        driver = GraphDatabase.driver(
            settings.uri,
            auth=auth,
            connection_timeout=timeout,
            notifications_min_severity="OFF",
            max_transaction_retry_time=15.0,
        )
    except (ValueError, ConfigurationError) as e:
        raise StcgError(f"invalid NEO4J_URI {settings.uri!r}: {e}") from None
    try:
        driver.verify_connectivity()
    except AuthError:
        driver.close()
        if missing is not None:
            raise missing from None
        raise StcgError(
            f"Neo4j at {settings.uri} rejected user {settings.username!r} with the password from "
            f"{settings.password_source()}: check NEO4J_USERNAME / NEO4J_PASSWORD"
        ) from None
    except (ServiceUnavailable, OSError) as e:
        driver.close()
        raise StcgError(
            f"Neo4j is not reachable at {settings.uri} ({type(e).__name__}); start it with `stcg neo4j start` "
            "or point NEO4J_URI at a running server"
        ) from None
    return driver
