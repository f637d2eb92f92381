"""Run a real Neo4j 5.26 Community server on loopback from Maven Central artefacts."""

from .server import BROWSER_VERSION, NEO4J_VERSION, LocalNeo4j, ServerStatus

__all__ = ["LocalNeo4j", "ServerStatus", "NEO4J_VERSION", "BROWSER_VERSION"]
