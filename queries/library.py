"""The Cypher template library: named ``.cypher`` files with a typed header, run as pandas DataFrames.

Header of a template (comment lines at the top of the file)::

    // name: perturbation_summary
    // question: Per perturbation, what are ...?
    // param: run_id string = null  -- run id or name (default: the latest complete run)

Parameter types: string, int, float, bool. A parameter without ``= default`` is required. Values
are always sent as query parameters; the query text never changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pandas as pd
from neo4j import Driver, RoutingControl

from stcg.config import Neo4jSettings
from stcg.errors import StcgError

_PARAM = re.compile(r"^//\s*param:\s*(\w+)\s+(string|int|float|bool)(?:\s*=\s*(.+?))?\s*(?:--\s*(.*))?$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: object
    required: bool
    description: str

    def coerce(self, value):
        """A value of this parameter's type, from a Python value or a CLI string."""
        if value is None:
            if self.required:
                raise StcgError(f"parameter {self.name!r} is required")
            return None
        try:
            if self.type == "string":
                return str(value)
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            if self.type == "float":
                return float(value)
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        except (TypeError, ValueError):
            raise StcgError(f"parameter {self.name!r} must be {self.type}, got {value!r}") from None


def _default(text: str | None, typ: str):
    if text is None:
        return None, True
    text = text.strip()
    if text == "null":
        return None, False
    if typ == "string":
        return text.strip('"').strip("'"), False
    return Param("default", typ, None, False, "").coerce(text), False


@dataclass(frozen=True)
class Template:
    name: str
    question: str
    params: tuple[Param, ...]
    cypher: str  # the whole file, header included (comments are valid Cypher)

    @classmethod
    def parse(cls, name: str, text: str) -> Template:
        header = {}
        params = []
        for line in text.splitlines():
            if not line.startswith("//"):
                break
            m = _PARAM.match(line)
            if m:
                pname, typ, default, desc = m.groups()
                value, required = _default(default, typ)
                params.append(Param(pname, typ, value, required, (desc or "").strip()))
                continue
            key, _, value = line[2:].strip().partition(":")
            header[key.strip()] = value.strip()
        if header.get("name") != name:
            raise ValueError(f"template file {name}.cypher declares name {header.get('name')!r}")
        return cls(name, header.get("question", ""), tuple(params), text)

    def bind(self, **values) -> dict:
        """Validated parameters: unknown names refused, defaults filled in, types coerced."""
        known = {p.name: p for p in self.params}
        unknown = set(values) - set(known)
        if unknown:
            raise StcgError(
                f"template {self.name!r} has no parameter {', '.join(sorted(unknown))}; "
                f"its parameters: {', '.join(known) or 'none'}"
            )
        return {p.name: p.coerce(values.get(p.name, p.default)) for p in self.params}

    def browser_params(self) -> str:
        """``:param`` lines that make the template runnable as-is in Neo4j Browser."""
        import json

        lines = []
        for p in self.params:
            v = "null" if p.default is None else json.dumps(p.default)
            lines.append(f":param {p.name} => {v}")
        return "\n".join(lines)


def template_names() -> list[str]:
    return sorted(
        f.name[: -len(".cypher")]
        for f in resources.files("queries").joinpath("cypher").iterdir()
        if f.name.endswith(".cypher")
    )


def load_template(name: str) -> Template:
    names = template_names()
    if name not in names:
        raise StcgError(f"unknown template {name!r}; templates: {', '.join(names)}")
    return Template.parse(name, resources.files("queries").joinpath("cypher", f"{name}.cypher").read_text())


def _plain(value):
    """Neo4j graph values -> plain Python (nodes/relationships as property dicts, paths as lists)."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        return {"_labels": sorted(value.labels), **dict(value)}
    if isinstance(value, Relationship):
        return {"_type": value.type, **dict(value)}
    if isinstance(value, Path):
        return [_plain(n) for n in value.nodes]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "to_native"):
        return value.to_native()
    return value


def describe_template(name: str) -> str:
    """Question, parameters, Browser :param lines and the Cypher of template ``name``."""
    t = load_template(name)
    lines = [f"{t.name}: {t.question}", "parameters:"]
    for p in t.params:
        req = "required" if p.required else f"default {p.default!r}"
        lines.append(f"  {p.name} ({p.type}, {req}): {p.description}")
    if not t.params:
        lines.append("  (none)")
    lines += ["", "In Neo4j Browser, run first:", t.browser_params() or "(no parameters)", "", t.cypher.strip()]
    return "\n".join(lines)


class QueryLibrary:
    """``QueryLibrary(driver_or_uri).run(name, **params) -> pandas.DataFrame``."""

    def __init__(
        self,
        driver_or_uri: Driver | str | None = None,
        database: str | None = None,
        auth: tuple[str, str] | None = None,
    ):
        self._own = False
        if driver_or_uri is None or isinstance(driver_or_uri, str):
            from stcg.db import connect

            settings = Neo4jSettings.from_env(
                uri=driver_or_uri,
                username=auth[0] if auth else None,
                password=auth[1] if auth else None,
                database=database,
            )
            self.driver = connect(settings)
            self.database = settings.database
            self._own = True
        else:
            self.driver = driver_or_uri
            self.database = database

    def close(self) -> None:
        if self._own:
            self.driver.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def list(self) -> pd.DataFrame:
        rows = [
            {"name": t.name, "question": t.question, "params": ", ".join(p.name for p in t.params)}
            for t in (load_template(n) for n in template_names())
        ]
        return pd.DataFrame(rows)

    def describe(self, name: str) -> str:
        return describe_template(name)

    def run(self, name: str, **params) -> pd.DataFrame:
        """Run template ``name`` with validated ``params``; one DataFrame row per record."""
        t = load_template(name)
        bound = t.bind(**params)
        records, _, keys = self.driver.execute_query(
            t.cypher, bound, database_=self.database, routing_=RoutingControl.READ
        )
        return pd.DataFrame([[_plain(r[k]) for k in keys] for r in records], columns=list(keys))
