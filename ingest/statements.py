"""The fixed write-side statements (``ingest/cypher/<name>.cypher``), loaded like the read side's templates.

Every value in them is a parameter. Python generates only the statements that follow the schema tables
(``ingest.writer``: one per node label and relationship group; ``stcg.statistics``: one per statistic).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from stcg.errors import StcgError


@cache
def statement(name: str) -> str:
    """The body of ``ingest/cypher/<name>.cypher``, its leading comment lines dropped."""
    path = resources.files("ingest").joinpath("cypher", f"{name}.cypher")
    if not path.is_file():
        raise StcgError(f"no write statement {name!r} in ingest/cypher/")
    lines = path.read_text().splitlines()
    while lines and (lines[0].startswith("//") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n"


def statement_names() -> list[str]:
    """Every statement file's name."""
    folder = resources.files("ingest").joinpath("cypher")
    return sorted(f.name[: -len(".cypher")] for f in folder.iterdir() if f.name.endswith(".cypher"))
