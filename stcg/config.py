"""Connection settings, read the Neo4j way from environment variables.

| variable          | default                  |
|-------------------|--------------------------|
| NEO4J_URI         | bolt://127.0.0.1:7687    |
| NEO4J_USERNAME    | neo4j                    |
| NEO4J_PASSWORD    | stcg-local-password      |
| NEO4J_DATABASE    | neo4j                    |

The default password is only for the loopback server that ``stcg neo4j start``
creates; set NEO4J_PASSWORD for anything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

DEFAULT_URI = "bolt://127.0.0.1:7687"
DEFAULT_USERNAME = "neo4j"
DEFAULT_PASSWORD = "stcg-local-password"
DEFAULT_DATABASE = "neo4j"


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str = DEFAULT_URI
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: str | None) -> Neo4jSettings:
        """Settings from ``env`` (default ``os.environ``); non-None ``overrides`` win."""
        env = os.environ if env is None else env
        base = cls(
            uri=env.get("NEO4J_URI") or DEFAULT_URI,
            username=env.get("NEO4J_USERNAME") or env.get("NEO4J_USER") or DEFAULT_USERNAME,
            password=env.get("NEO4J_PASSWORD") or DEFAULT_PASSWORD,
            database=env.get("NEO4J_DATABASE") or DEFAULT_DATABASE,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def redacted(self) -> str:
        return f"{self.uri} (user {self.username}, database {self.database})"
