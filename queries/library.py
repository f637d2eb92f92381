"""``QueryLibrary``: the templates of ``queries.templates`` run on a Neo4j server as pandas DataFrames.

The template language (the ``.cypher`` header, parameters, fragments, Browser text) is
``queries/templates.py``; this module holds the runtime: connecting, checking parameters, resolving
the default run, explaining an empty result, and opening a run's file store.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pandas as pd
from neo4j import Driver, RoutingControl

from queries.templates import (  # noqa: F401  (re-exported: the library's public names)
    RUN_PARAMS,
    Param,
    Template,
    cypher_literal,
    describe_template,
    load_template,
    template_names,
)
from stcg.config import Neo4jSettings
from stcg.errors import StcgError

DEFAULT_STORE = "out/store"
"""Where runs ingested before ``Run.store`` existed were written by default."""


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


def plain_value(value):
    """Neo4j graph values -> plain Python (nodes/relationships as property dicts, paths as lists)."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        return {"_labels": sorted(value.labels), **dict(value)}
    if isinstance(value, Relationship):
        return {"_type": value.type, **dict(value)}
    if isinstance(value, Path):
        return [plain_value(n) for n in value.nodes]
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    if hasattr(value, "to_native"):
        return value.to_native()
    return value


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
        return pd.DataFrame([[plain_value(r[k]) for k in keys] for r in records], columns=list(keys))

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
