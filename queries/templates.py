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
from dataclasses import dataclass
from functools import cache
from importlib import resources

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
