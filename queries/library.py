"""The Cypher template library: named ``.cypher`` files with a typed header, run as pandas DataFrames.

A template is one ``queries/cypher/NAME.cypher`` file. Its header (the comment lines at the top)::

    // name: flips
    // question: Which examples flip their answer under a given perturbation? (spec Q5)
    // param: run_id string = null  -- run id or name (default: the latest complete run)
    // param: perturbation string = "color_shift" {center_mask|color_shift|...}  -- perturbation kind
    // param: limit int = 100 [1..]  -- at most this many examples
    // internal: true                  (optional: used by the package, left out of `stcg query list`)

``// param: NAME TYPE [= DEFAULT] [RANGE | CHOICES] [-- DESCRIPTION]``: TYPE is string, int, float
or bool; without ``= DEFAULT`` the parameter is required; ``= null`` makes None the default.
RANGE ``[lo..hi]`` bounds an int or float (inclusive; either end may be left open: ``[1..]``);
CHOICES ``{a|b|c}`` lists the values a string may take. Ints are 64-bit, floats finite. Every
value is checked before the query runs, and always sent as a query parameter: the query text never
changes with user input.

A line ``// @include FRAGMENT`` in the body is replaced by ``queries/cypher/fragments/FRAGMENT.cypher``
(its leading comment lines dropped, indentation kept). ``Template.cypher`` is the expanded text, what
runs and what ``stcg query show NAME`` prints for Neo4j Browser; ``Template.source`` is the file.
``run_scope`` binds ``r`` to the run a template reads: ``$run_id`` (a run's uid or name) or, when null,
the latest run with status ``complete`` (never a ``partial``, ``running`` or ``failed`` one).
``rows_<of>`` yields ``r, s``, one map ``s`` per group of the run's statistics: its stored ``Stats {of}``
nodes, or, for a run without them, the same rows computed from the graph by ``stats_<of>`` (the
statement ``ingest.stats`` stores them with, ``stcg.statistics``), so a whole-run template reads sums, not the run.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pandas as pd
from neo4j import Driver, RoutingControl

from stcg.config import Neo4jSettings
from stcg.errors import StcgError

_PARAM = re.compile(
    r"^//\s*param:\s*(?P<name>\w+)\s+(?P<type>string|int|float|bool)"
    r"(?:\s*=\s*(?P<default>\"[^\"]*\"|'[^']*'|[^\s\[{]+))?"
    r"(?:\s*\[(?P<range>[^\]]*)\]|\s*\{(?P<choices>[^}]*)\})?"
    r"\s*(?:--\s*(?P<desc>.*))?$"
)
_INCLUDE = re.compile(r"^(?P<indent>\s*)//\s*@include\s+(?P<name>[\w-]+)\s*$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RUN_PARAMS = ("run_id", "run_a", "run_b")
"""Parameters that name a run (uid or name); ``run_id`` = null means the default run."""
DEFAULT_STORE = "out/store"
"""Where runs ingested before ``Run.store`` existed were written by default."""


def _num(text: str, typ: str):
    text = text.strip()
    if not text:
        return None
    return int(text) if typ == "int" else float(text)


@dataclass(frozen=True)
class Param:
    """One template parameter: ``type`` is string|int|float|bool; ``minimum``/``maximum`` (inclusive,
    None = open) bound ints and floats; ``choices`` lists a string's allowed values (None = any)."""

    name: str
    type: str
    default: object
    required: bool
    description: str
    minimum: float | int | None = None
    maximum: float | int | None = None
    choices: tuple[str, ...] | None = None

    def coerce(self, value):
        """This parameter's value from a Python value or a CLI string: type, then range/choices checked.

        Raises ``StcgError`` (one line, naming the parameter and what it accepts) when the value is
        missing but required, of the wrong type, not a 64-bit int / finite float, out of range, or
        not one of the choices. None stays None for an optional parameter.
        """
        if value is None:
            if self.required:
                raise StcgError(f"parameter {self.name!r} is required ({self.description or self.type})")
            return None
        v = self._typed(value)
        self._check(v)
        return v

    def _typed(self, value):
        try:
            if self.type == "string":
                if isinstance(value, (dict, list, tuple, set, bytes)):
                    raise ValueError
                return str(value)
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                v = int(value.strip()) if isinstance(value, str) else int(value)
                if not INT64_MIN <= v <= INT64_MAX:
                    raise StcgError(f"parameter {self.name!r} must be a 64-bit integer, got {value!r}")
                return v
            if self.type == "float":
                if isinstance(value, bool):
                    raise ValueError
                v = float(value)
                if not math.isfinite(v):
                    raise StcgError(f"parameter {self.name!r} must be a finite number, got {value!r}")
                return v
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise StcgError(f"parameter {self.name!r} must be {self.type}, got {value!r}") from None

    def _check(self, v) -> None:
        if self.choices is not None and v not in self.choices:
            raise StcgError(f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {v!r}")
        lo, hi = self.minimum, self.maximum
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if lo is not None and hi is not None:
                bound = f"between {_fmt(lo)} and {_fmt(hi)}"
            else:
                bound = f">= {_fmt(lo)}" if lo is not None else f"<= {_fmt(hi)}"
            raise StcgError(f"parameter {self.name!r} must be {bound}, got {v!r}")

    @property
    def range_text(self) -> str:
        """``[lo..hi]``, ``{a|b}`` or ``""``: the constraint as the header writes it."""
        if self.choices is not None:
            return "{" + "|".join(self.choices) + "}"
        if self.minimum is None and self.maximum is None:
            return ""
        return f"[{_fmt(self.minimum)}..{_fmt(self.maximum)}]"


def _fmt(v) -> str:
    return "" if v is None else (format(v, "g") if isinstance(v, float) else str(v))


def _parse_param(line: str, template: str) -> Param:
    m = _PARAM.match(line)
    if not m:
        raise StcgError(
            f"template {template}: bad parameter line {line!r}; "
            "use // param: NAME TYPE [= DEFAULT] [[lo..hi] | {a|b}] [-- description]"
        )
    name, typ, default, rng, choices, desc = m.group("name", "type", "default", "range", "choices", "desc")
    lo = hi = None
    if rng is not None:
        if typ not in ("int", "float") or ".." not in rng:
            raise StcgError(f"template {template}: parameter {name}: a range [lo..hi] needs int or float")
        lo_text, _, hi_text = rng.partition("..")
        try:
            lo, hi = _num(lo_text, typ), _num(hi_text, typ)
        except ValueError:
            raise StcgError(f"template {template}: parameter {name}: bad range [{rng}]") from None
    options = None
    if choices is not None:
        if typ != "string":
            raise StcgError(f"template {template}: parameter {name}: choices {{a|b}} need a string parameter")
        options = tuple(c.strip() for c in choices.split("|") if c.strip())
    bare = Param(name, typ, None, False, (desc or "").strip(), lo, hi, options)
    if default is None:
        return Param(name, typ, None, True, bare.description, lo, hi, options)
    default = default.strip()
    if default == "null":
        return bare
    if typ == "string":
        default = default.strip('"').strip("'")
    try:
        value = bare.coerce(default)
    except StcgError as e:
        raise StcgError(f"template {template}: the default of {e}") from None
    return Param(name, typ, value, False, bare.description, lo, hi, options)


@cache
def load_fragment(name: str) -> str:
    """The body of ``queries/cypher/fragments/NAME.cypher`` (its leading comment lines dropped); ``stats_<of>``
    is the statement that computes a run's statistics (``stcg/cypher/stats_<of>.cypher``, ``stcg.statistics``)."""
    folder = resources.files("queries").joinpath("cypher", "fragments")
    path = folder.joinpath(f"{name}.cypher")
    if name.startswith("stats_") and not path.is_file():
        from stcg.statistics import stats_statement

        return stats_statement(name[len("stats_") :])
    if not path.is_file():
        known = sorted(f.name[: -len(".cypher")] for f in folder.iterdir() if f.name.endswith(".cypher"))
        raise StcgError(f"unknown fragment {name!r} (// @include {name}); fragments: {', '.join(known)}")
    lines = path.read_text().splitlines()
    while lines and (lines[0].startswith("//") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip()


def expand_includes(text: str, _stack: tuple[str, ...] = ()) -> str:
    """``text`` with every ``// @include NAME`` line replaced by the fragment (recursively)."""
    out = []
    for line in text.splitlines():
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        name = m.group("name")
        if name in _stack:
            raise StcgError(f"fragment {name!r} includes itself ({' -> '.join((*_stack, name))})")
        body = expand_includes(load_fragment(name), (*_stack, name))
        out.extend(m.group("indent") + ln if ln.strip() else ln for ln in body.splitlines())
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


@dataclass(frozen=True)
class Template:
    """A parsed template: ``cypher`` is the runnable text (includes expanded, header kept as comments)."""

    name: str
    question: str
    params: tuple[Param, ...]
    cypher: str
    source: str = ""
    internal: bool = False

    @classmethod
    def parse(cls, name: str, text: str) -> Template:
        header = {}
        params = []
        for line in text.splitlines():
            if not line.startswith("//") or _INCLUDE.match(line):
                break
            if re.match(r"^//\s*param:", line):
                params.append(_parse_param(line, name))
                continue
            key, _, value = line[2:].strip().partition(":")
            header[key.strip()] = value.strip()
        if header.get("name") != name:
            raise StcgError(f"template file {name}.cypher declares name {header.get('name')!r}")
        internal = header.get("internal", "").lower() in _TRUE
        return cls(name, header.get("question", ""), tuple(params), expand_includes(text), text, internal)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def bind(self, **values) -> dict:
        """Validated parameters: unknown names refused, defaults filled in, types, ranges, choices checked."""
        self._check_names(values)
        return {p.name: p.coerce(values.get(p.name, p.default)) for p in self.params}

    def bind_partial(self, **values) -> dict:
        """Like ``bind``, but a required parameter left out is absent instead of an error (to fill in later)."""
        self._check_names(values)
        return {
            p.name: p.coerce(values.get(p.name, p.default)) for p in self.params if p.name in values or not p.required
        }

    def _check_names(self, values: dict) -> None:
        unknown = set(values) - {p.name for p in self.params}
        if unknown:
            raise StcgError(
                f"template {self.name!r} has no parameter {', '.join(sorted(unknown))}; "
                f"its parameters: {', '.join(p.name for p in self.params) or 'none'}"
            )

    def browser_params(self, values: dict | None = None) -> str:
        """``:param`` lines (each ending in ``;``) that make the template runnable as-is in Neo4j Browser.

        ``values`` (already valid, e.g. from ``bind`` or ``QueryLibrary.sample_values``) override the
        defaults; a required parameter without a value gets the placeholder ``"<NAME>"``. Each value
        is a Cypher literal after ``=>``, so an int stays an int (``:params {...}`` would make it a float).
        """
        values = values or {}
        lines = []
        for p in self.params:
            v = values.get(p.name, p.default)
            if v is None and p.required:
                v = placeholder(p)
            lines.append(f":param {p.name} => {cypher_literal(v)};")
        return "\n".join(lines)

    def browser_text(self, values: dict | None = None) -> str:
        """What to paste into Neo4j Browser: the ``:param`` lines, then the expanded query."""
        params = self.browser_params(values)
        return (params + "\n" if params else "") + self.cypher.strip() + "\n"


def placeholder(p: Param) -> str:
    """The marked stand-in for a required parameter that has no value yet."""
    return f"<{p.name}>"


def cypher_literal(value) -> str:
    """``value`` as a Cypher literal (strings JSON-quoted, which Cypher reads the same; ints stay ints)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value))


def _cypher_dir():
    return resources.files("queries").joinpath("cypher")


def template_names(internal: bool = False) -> list[str]:
    """Names of the templates in ``queries/cypher/``; internal ones (``// internal: true``) only if asked."""
    names = sorted(f.name[: -len(".cypher")] for f in _cypher_dir().iterdir() if f.name.endswith(".cypher"))
    return names if internal else [n for n in names if not load_template(n).internal]


@cache
def _load(name: str) -> Template:
    return Template.parse(name, _cypher_dir().joinpath(f"{name}.cypher").read_text())


def load_template(name: str) -> Template:
    """The parsed template ``name`` (internal ones included); one-line ``StcgError`` for an unknown name."""
    if not re.fullmatch(r"\w+", name or "") or not _cypher_dir().joinpath(f"{name}.cypher").is_file():
        raise StcgError(f"unknown template {name!r}; templates: {', '.join(template_names())}")
    return _load(name)


# fixed statements of ``QueryLibrary._explain_empty`` (every value a parameter)
_RUN_LOOKUP = "MATCH (r:Run) WHERE r.uid = $run OR r.name = $run RETURN r.uid AS uid, r.perturbations AS perturbations"
_RUN_LOOKUP_DEFAULT = """
MATCH (r:Run {status: 'complete'}) RETURN r.uid AS uid, r.perturbations AS perturbations
ORDER BY r.finished_at DESC LIMIT 1
"""
_METHOD_LOOKUP = "MATCH (x:Explanation {method: $method}) WHERE x.run_id = $run RETURN x.method LIMIT 1"
_METHODS_SEEN = """
MATCH (:Run {uid: $run})-[:HAS_EXAMPLE]->(e:Example) WHERE e.complete
WITH e LIMIT 20
MATCH (e)-[:HAS_EXPLANATION]->(x:Explanation)
RETURN DISTINCT x.method AS method ORDER BY method
"""


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


def describe_template(name: str, values: dict | None = None, note: str | None = None) -> str:
    """Question, parameters (type, default, range), then the Browser-ready text: ``:param`` lines and query.

    ``values`` fill the ``:param`` lines (see ``Template.browser_params``); ``note`` is printed above them.
    """
    t = load_template(name)
    lines = [f"{t.name}: {t.question}" + ("  [internal]" if t.internal else ""), "parameters:"]
    for p in t.params:
        req = "required" if p.required else f"default {cypher_literal(p.default)}"
        constraint = f", {p.range_text}" if p.range_text else ""
        lines.append(f"  {p.name} ({p.type}, {req}{constraint}): {p.description}")
    if not t.params:
        lines.append("  (none)")
    lines += [
        "",
        "In Neo4j Browser: run the :param lines below first (Ctrl+Enter or the run button), then paste and run the"
        f" query (`stcg query show {t.name} | grep -v '^:param'` prints only the query). Pasted together, Browser"
        " runs both but shows a list of statements instead of the result.",
    ]
    if note:
        lines.append(f"({note})")
    lines += ["", t.browser_text(values).rstrip()]
    return "\n".join(lines)


class NewerRunWarning(UserWarning):
    """The default run (latest complete) is older than a partial or running run."""


def open_run_store(run_id: str, recorded: str | None, store: str | None = None, option: str = "--store"):
    """The ``FileStore`` of ``run_id``: ``store`` if given, else the run's recorded root (``Run.store``), else
    ``out/store`` (runs ingested before the root was recorded). One-line ``StcgError`` naming the path
    tried and ``option`` when it is not there."""
    from stcg.filestore import FileStore

    if store is not None or recorded:
        return FileStore.open(store if store is not None else recorded, run_id, option=option)
    fs = FileStore(DEFAULT_STORE, run_id)
    if not fs.shards.is_dir():
        raise StcgError(
            f"file store of run {run_id} not found at {fs.dir} (the run does not record its store, so the default "
            f"{DEFAULT_STORE} was tried); pass {option} with the folder that holds {run_id}/"
        )
    return FileStore.open(DEFAULT_STORE, run_id, option=option)


class QueryLibrary:
    """Runs the templates on a Neo4j server: ``QueryLibrary().run(name, **params) -> pandas.DataFrame``.

    Args:
        driver_or_uri: an open ``neo4j.Driver`` (not closed by the library), a Bolt URI, or None
            (``NEO4J_URI``, default ``bolt://127.0.0.1:7687``).
        database: database name (default: ``settings.database`` / ``NEO4J_DATABASE`` / the server's default).
        auth: ``(username, password)``; each defaults to ``NEO4J_USERNAME`` / ``NEO4J_PASSWORD``.
        settings: complete ``Neo4jSettings`` (what the CLI builds from its options); wins over the above.
        notice: called with one line when a template reads the default run (``run_id`` null) while a
            newer run is ``partial`` or ``running`` (at most once per library). Default: a
            ``NewerRunWarning``.
        run_hint: how the notice tells to select that run; ``{run}`` is its uid (e.g. ``--run {run}``).
        timeout: seconds to wait for the server when the library connects itself.

    Use as a context manager (or call ``close``) when it opened the connection itself.
    """

    def __init__(
        self,
        driver_or_uri: Driver | str | None = None,
        database: str | None = None,
        auth: tuple[str, str] | None = None,
        *,
        settings: Neo4jSettings | None = None,
        notice: Callable[[str], None] | None = None,
        run_hint: str = "run_id={run!r}",
        timeout: float = 10.0,
    ):
        self._own = False
        self.notice = notice
        self.run_hint = run_hint
        self._checked_default = False
        if driver_or_uri is not None and not isinstance(driver_or_uri, str):
            self.driver = driver_or_uri
            self.database = database if database is not None else (settings.database if settings else None)
            return
        from stcg.db import connect

        if settings is None:
            settings = Neo4jSettings.from_env(
                uri=driver_or_uri,
                username=auth[0] if auth else None,
                password=auth[1] if auth else None,
                database=database,
            )
        self.driver = connect(settings, timeout=timeout)
        self.database = settings.database
        self._own = True

    def close(self) -> None:
        """Close the connection if the library opened it."""
        if self._own:
            self.driver.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- the templates
    def list(self, internal: bool = False) -> pd.DataFrame:
        """One row per template: ``name``, ``question``, ``params`` (comma-separated names), ``internal``.

        Internal templates (used by the package itself, e.g. where an example's arrays are) only with
        ``internal=True``.
        """
        rows = [
            {
                "name": t.name,
                "question": t.question,
                "params": ", ".join(p.name for p in t.params),
                "internal": t.internal,
            }
            for t in (load_template(n) for n in template_names(internal))
        ]
        return pd.DataFrame(rows, columns=["name", "question", "params", "internal"])

    def describe(self, name: str, **values) -> str:
        """Text: the question, each parameter (type, default, range or choices, meaning), then what to paste
        into Neo4j Browser: ``:param`` lines (``;``-terminated) and the expanded query.

        ``values`` set parameters; required ones left out get a real value from the database (see
        ``sample_values``), or a ``"<name>"`` placeholder when there is none.
        """
        values, missing = self.sample_values(name, **values)
        note = None
        if missing:
            note = f"{', '.join(missing)}: placeholder, replace it before running" + (
                "; example ids: `stcg query run run_examples`" if "example_id" in missing else ""
            )
        return describe_template(name, values, note)

    def browser_text(self, name: str, **values) -> str:
        """Only the paste-ready text for Neo4j Browser (``:param`` lines, then the query); see ``describe``."""
        values, _ = self.sample_values(name, **values)
        return load_template(name).browser_text(values)

    def sample_values(self, name: str, **values) -> tuple[dict, list[str]]:
        """(parameter values that make template ``name`` runnable as-is, names still without a value).

        ``values`` are validated and kept. A required parameter without one gets a real value:
        ``run_a`` the latest complete run's uid, ``run_b`` the one before it (or the same),
        ``run_id`` the latest complete run, ``example_id`` the first complete example of the run
        that ``run_id`` names (or of the default run). Others stay None (listed as missing).
        """
        t = load_template(name)
        bound = t.bind_partial(**values)
        need = [p.name for p in t.params if p.required and p.name not in values]
        if any(n in RUN_PARAMS for n in need):
            complete = self.run("runs", limit=1000)
            complete = complete[complete.status == "complete"].sort_values("finished_at", ascending=False)
            uids = list(complete.run_id)
            picks = {"run_id": uids[:1], "run_a": uids[:1], "run_b": (uids[1:2] or uids[:1])}
            for n in need:
                if n in picks and picks[n]:
                    bound[n] = picks[n][0]
        if "example_id" in need:
            first = self.run("run_examples", run_id=bound.get("run_id"), limit=1)
            if len(first):
                bound["example_id"] = first.example_id.iloc[0]
        return bound, [n for n in need if bound.get(n) is None]

    def run(self, name: str, **params) -> pd.DataFrame:
        """Run template ``name``; one DataFrame row per record, one column per returned key.

        Args:
            name: a template name (``template_names(internal=True)``).
            **params: its parameters (Python values or strings as on the command line); checked by
                ``Template.bind`` before anything is sent.
        Returns:
            ``pandas.DataFrame`` with the template's RETURN columns, in order (empty with those
            columns when nothing matches). Nodes/relationships come back as property dicts, paths as
            lists of node dicts, temporal values as Python ``datetime``.
        Raises:
            StcgError: unknown template or parameter, a bad value, or an error from the server
                (its message's first line).
        """
        t = load_template(name)
        bound = t.bind(**params)
        if "run_id" in bound and bound["run_id"] is None:
            self._check_default_run()
        runs = self._named_runs(bound)
        records, keys = self._execute(t, bound)
        if not records:  # only what the caller named: a template's default may be absent from a run
            self._explain_empty({k: v for k, v in bound.items() if k in params}, runs)
        return pd.DataFrame([[_plain(r[k]) for k in keys] for r in records], columns=list(keys))

    def _named_runs(self, bound: dict) -> list[dict]:
        """The runs the parameters name (one indexed look-up each); a one-line ``StcgError`` for a name that
        is no run's, so a typo never reads as "no rows" or as a comparison with nothing."""
        runs = []
        for key in ("run_id", "run_a", "run_b"):
            if bound.get(key) is not None:
                found = self._query(_RUN_LOOKUP, run=bound[key])
                if not found:
                    raise StcgError(f"no run {bound[key]!r} in this database (list them: stcg query run runs)")
                runs.append(found[0])
        return runs

    def _explain_empty(self, bound: dict, runs: list[dict]) -> None:
        """No rows: a one-line ``StcgError`` when that is because a parameter names nothing in the run (a
        perturbation kind or an attribution method it does not have). Checked only for empty answers; an
        empty answer about real things stays empty."""
        run = runs[0] if runs else None
        if run is None:
            found = self._query(_RUN_LOOKUP_DEFAULT)
            run = found[0] if found else None
        kind = bound.get("perturbation")
        if kind is not None:
            from stcg_model.perturbations import REGISTRY

            if kind not in REGISTRY:
                raise StcgError(f"unknown perturbation {kind!r}: the kinds are {', '.join(sorted(REGISTRY))}")
            if run is not None and run["perturbations"] is not None and kind not in run["perturbations"]:
                raise StcgError(
                    f"run {run['uid']!r} has no perturbation {kind!r} (it has: {', '.join(run['perturbations'])})"
                )
        for key in ("method", "method_a", "method_b"):
            method = bound.get(key)
            if method is None or method == "attention" or run is None:
                continue
            if not self._query(_METHOD_LOOKUP, run=run["uid"], method=method):
                has = ["attention", *(r["method"] for r in self._query(_METHODS_SEEN, run=run["uid"]))]
                raise StcgError(
                    f"run {run['uid']!r} has no explanations of method {method!r} (it has: {', '.join(has)}; "
                    "others are ingested with --attributions)"
                )

    def _query(self, cypher: str, **params) -> list[dict]:
        records, _, _ = self.driver.execute_query(cypher, params, database_=self.database, routing_=RoutingControl.READ)
        return [r.data() for r in records]

    def _execute(self, t: Template, bound: dict):
        from neo4j.exceptions import DriverError, Neo4jError

        try:
            records, _, keys = self.driver.execute_query(
                t.cypher, bound, database_=self.database, routing_=RoutingControl.READ
            )
        except Neo4jError as e:
            first = (e.message or str(e)).strip().splitlines()[0] if (e.message or str(e)).strip() else e.code
            raise StcgError(f"template {t.name!r} failed on the server: {first} ({e.code})") from None
        except DriverError as e:
            raise StcgError(f"template {t.name!r}: Neo4j connection failed ({type(e).__name__}: {e})") from None
        return records, keys

    # ----------------------------------------------------------------- runs and their stores
    def default_run_notice(self) -> str | None:
        """One line when the default run (latest complete) is older than a partial or running run, else None.

        "Older": the other run was started or updated after the default run finished (or there is no
        complete run at all).
        """
        rows = self.run("newer_runs")
        if rows.empty:
            return None
        top = rows.iloc[0]
        label = repr(top["name"]) if top["name"] == top["run_id"] else f"{top['name']!r} ({top['run_id']})"
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        hint = self.run_hint.format(run=top["run_id"])
        if top["default_run"] is None:
            return (
                f"note: no run is complete, so nothing is read by default; run {label} is {top['status']}{more}: "
                f"pass {hint} to read it"
            )
        return (
            f"note: the default run {top['default_name']!r} (latest complete) is older than run {label}, "
            f"which is {top['status']}{more}; to read that one pass {hint}"
        )

    def _check_default_run(self) -> None:
        if self._checked_default:
            return
        self._checked_default = True
        line = self.default_run_notice()
        if line:
            if self.notice is not None:
                self.notice(line)
            else:
                warnings.warn(line, NewerRunWarning, stacklevel=4)

    def resolve_run(self, run: str | None = None) -> dict:
        """The run ``run`` names (uid or name), or the default one (latest complete) when None.

        Returns ``{"run_id", "name", "status", "store", "model", "dataset", "split", "n_complete",
        "finished_at"}`` (``store``: the file store root ingestion recorded, None for older runs).
        Raises ``StcgError`` when there is no such run; with ``run=None`` a newer partial/running run
        is announced through ``notice`` first.
        """
        rows = self.run("run_info", run_id=run)
        if rows.empty:
            if run:
                raise StcgError(f"no run {run!r} in the database (`stcg query run runs` lists them)")
            raise StcgError(
                "no complete run in the database; ingest one first (`stcg query run runs` lists partial ones)"
            )
        return rows.iloc[0].to_dict()

    def open_store(self, run: dict | str | None = None, store: str | None = None, option: str = "--store"):
        """The ``FileStore`` of a run (a ``resolve_run`` dict, or a run id/name, or None = default run).

        ``store`` overrides the root the run recorded; ``option`` is what the error tells to pass.
        """
        info = run if isinstance(run, dict) else self.resolve_run(run)
        return open_run_store(info["run_id"], info.get("store"), store, option)
