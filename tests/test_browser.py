"""docs/browser.md followed literally in a real Neo4j Browser 5.24 (headless Chromium driven by Selenium).

A server of its own (free loopback ports, a new home with a generated password, the Browser
settings `stcg neo4j start` writes) holds a small real run: 4 easy-VQA test questions explained by
the demo model. Browser is driven the way a user would: connect with the password from the home's
file, paste the doc's `:param` lines and the query `stcg query show example_graph` prints, press
Ctrl+Enter, re-run the frame for the other views. What Browser draws (its SVG) is compared with
what the same query returns through the driver, with the captions and colours of the STCG style.

Set STCG_BROWSER_SHOTS=<folder> to keep a screenshot of each view.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from stcg.config import Neo4jSettings
from stcg.neo4j_runtime.browser import STYLE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "browser.md"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CAPTION = {  # what the style's captions show, from a node's properties
    "Example": lambda p: f"{p['question']} ({p['answer']})",
    "Token": lambda p: p["text"],
    "Region": lambda p: f"{p['row']},{p['col']}",
    "Timestep": lambda p: p["token"],
    "Perturbation": lambda p: f"{p['kind']} ({p['answer']})",
}
REL_CAPTION = {
    "ATTENDS": lambda p: f"#{p['rank']}",
    "MOVES": lambda p: f"#{p['rank']}",
    "DW": lambda p: f"#{p['rank']}",
    "NEXT": lambda p: "next",
    "ATTENDS_TOKEN": lambda p: "attends",
    "MOVES_TOKEN": lambda p: "moves",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NEO4J_PASSWORD", "STCG_NEO4J_HOME", "NEO4J_URI")}
    return {**env, **extra}


def _stcg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ingest.pipeline import IngestConfig, run_ingest

    tmp = tmp_path_factory.mktemp("browser")
    home, bolt, http = tmp / "neo4j", _free_port(), _free_port()
    args = ["--home", str(home), "--bolt-port", str(bolt), "--http-port", str(http), "--heap", "512m"]
    args += ["--pagecache", "64m"]
    started = _stcg("neo4j", "start", *args, env=_env())
    assert started.returncode == 0, started.stderr
    env = _env(STCG_NEO4J_HOME=str(home), NEO4J_URI=f"bolt://127.0.0.1:{bolt}")
    try:
        settings = Neo4jSettings.from_env(env)
        cfg = IngestConfig(dataset="easy-vqa", split="test", sample=4, seed=0, store=str(tmp / "store"))
        summary = run_ingest(cfg, settings, log=lambda s: None, progress=False)
        yield {
            "http": f"http://127.0.0.1:{http}",
            "bolt": bolt,
            "password": (home / "stcg-password").read_text().strip(),
            "settings": settings,
            "env": env,
            "run_id": summary.run_id,
        }
    finally:
        _stcg("neo4j", "stop", *args, env=_env())


@pytest.fixture(scope="module")
def example_id(server) -> str:
    """An example of the run other than its first (the default), so the `:param example_id` line matters."""
    listed = _stcg("query", "run", "run_examples", "--format", "csv", env=server["env"])
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.strip().splitlines()[-1].split(",")[0]


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_script_timeout(30)
    yield drv
    drv.quit()


# ----------------------------------------------------------------------------- helpers
def _wait(what: str, predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"Browser: timed out waiting for {what}")


def _paste_and_run(drv, text: str) -> None:
    """Paste ``text`` into Browser's main editor (a real paste event, as a user's), then Ctrl+Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    area = drv.find_element(By.CSS_SELECTOR, "[data-testid=activeEditor] textarea, .monaco-editor textarea")
    area.click()
    drv.execute_script(
        "const ta = arguments[0]; ta.focus();"
        "const dt = new DataTransfer(); dt.setData('text/plain', arguments[1]);"
        "ta.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));",
        area,
        text,
    )
    area.send_keys(Keys.CONTROL, Keys.ENTER)


def _frame(drv, command_start: str):
    """The newest result frame whose command starts with ``command_start`` (None if there is none)."""
    return drv.execute_script(
        "return [...document.querySelectorAll('article')].find(a => {"
        "  const c = a.querySelector('[data-testid=frameCommand]');"
        "  return c && c.innerText.replace(/\\s+/g, ' ').trim().startsWith(arguments[0]); }) || null;",
        command_start,
    )


def _errors(drv) -> list[str]:
    return drv.execute_script(
        "return [...document.querySelectorAll('article')].map(a => a.innerText)"
        ".filter(t => /Neo\\.(Client|Database|Transient)Error|ERROR/.test(t)).map(t => t.slice(0, 300));"
    )


def _drawn(drv, frame) -> dict:
    """What Browser drew in ``frame``: node captions and fills, relationship captions (whitespace normalised)."""
    return drv.execute_script(
        "const f = arguments[0]; const txt = g => [...g.querySelectorAll('text')].map(t => t.textContent)"
        "  .join(' ').replace(/\\s+/g, ' ').trim();"
        "return {nodes: [...f.querySelectorAll('g.node')].map(g => [txt(g),"
        "          g.querySelector('circle.b-outline').getAttribute('fill')]),"
        "        rels: [...f.querySelectorAll('g.relationship')].map(txt)};",
        frame,
    )


def _doc_params(example_id: str) -> str:
    """The `:param` block of docs/browser.md, with this test run's example id in place of the doc's."""
    blocks = [textwrap.dedent(b) for b in re.findall(r"^ *```\n(.*?)^ *```", DOC.read_text(), re.S | re.M)]
    block = next(b for b in blocks if b.startswith(":param run_id"))
    return re.sub(r'(:param example_id => )"[^"]*"', rf'\1"{example_id}"', block)


def _expected(settings: Neo4jSettings, query: str, **params) -> dict:
    """The distinct nodes and relationships the query returns, as the style captions and colours them."""
    from stcg.db import connect

    with connect(settings) as driver:
        records, _, _ = driver.execute_query(query, params, database_=settings.database)
    nodes = {n.element_id: n for r in records for n in r["p"].nodes}
    rels = {x.element_id: x for r in records for x in r["p"].relationships}
    captions = Counter()
    fills = Counter()
    for n in nodes.values():
        (label,) = n.labels
        captions[CAPTION[label](n)] += 1
        fills[STYLE[f"node.{label}"]["color"]] += 1
    return {
        "labels": Counter(next(iter(n.labels)) for n in nodes.values()),
        "types": Counter(x.type for x in rels.values()),
        "captions": captions,
        "fills": fills,
        "rel_captions": Counter(REL_CAPTION.get(x.type, lambda p: "")(x) for x in rels.values()),
    }


def _check_view(drv, frame, expected: dict, shot: str, tmp_path: Path) -> None:
    drawn = _drawn(drv, frame)
    assert len(drawn["nodes"]) == sum(expected["labels"].values())
    # only the query's relationships: "connect result nodes" is off
    assert len(drawn["rels"]) == sum(expected["types"].values()), (drawn["rels"], expected["types"])
    assert Counter(c for c, _ in drawn["nodes"]) == expected["captions"]  # whole captions, nothing cut off
    assert Counter(f.upper() for _, f in drawn["nodes"]) == expected["fills"]
    assert Counter(drawn["rels"]) == expected["rel_captions"]
    assert _errors(drv) == []
    folder = Path(os.environ.get("STCG_BROWSER_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    drv.execute_script("arguments[0].scrollIntoView()", frame)
    frame.screenshot(str(folder / f"browser-{shot}.png"))


# ----------------------------------------------------------------------------- tests
def test_style_covers_every_label_and_relationship_type():
    """docs/browser.grass is the style the server hands Browser, and it styles everything the writer creates."""
    from ingest.schema import NODE_LABELS
    from ingest.writer import EXAMPLE_STATEMENT
    from stcg.neo4j_runtime.browser import grass, post_connect_cmd

    assert (ROOT / "docs" / "browser.grass").read_text() == grass()
    written = set(re.findall(r"\[:([A-Z_]+)", EXAMPLE_STATEMENT))
    assert written == {
        "HAS_EXAMPLE", "HAS_TOKEN", "HAS_REGION", "HAS_STEP", "HAS_PERTURBATION",
        "ATTENDS", "ATTENDS_TOKEN", "NEXT", "DW", "MOVES", "MOVES_TOKEN",
        "HAS_EXPLANATION", "ATTRIBUTES", "RANKS", "UNDER",
    }  # fmt: skip
    assert {f"relationship.{t}" for t in written} | {f"node.{label}" for label in NODE_LABELS} <= set(STYLE)
    for selector, props in STYLE.items():
        assert "caption" in props or selector in ("node",), selector
        assert not re.search(r"\{(weight|js|dW|abs_dW|dW_norm|dp)\}", props.get("caption", "")), "long floats"
    cmd = post_connect_cmd()
    assert cmd.startswith("config autoComplete: false; style {") and "\n" not in cmd


def test_doc_example_is_in_the_demo_run():
    """The example id docs/browser.md uses is one of the questions `stcg demo` ingests (sample 200, seed 0)."""
    from stcg.datasets import open_dataset

    (doc_id,) = set(re.findall(r':param example_id => "([^"]+)"', DOC.read_text()))
    demo_ids = {e.example_id for e in open_dataset("easy-vqa", split="test", sample=200, seed=0)}
    assert doc_id in demo_ids


def test_connect_runs_the_post_connect_commands(server, browser):
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(f"{server['http']}/browser/")
    form = _wait("the connect form", lambda: drv.find_elements(By.CSS_SELECTOR, "input[data-testid=password]"))
    # the connect form names this server (discovery advertises the real Bolt port)
    urls = [e.get_attribute("value") for e in drv.find_elements(By.CSS_SELECTOR, "input[data-testid=boltaddress]")]
    assert urls == [f"127.0.0.1:{server['bolt']}"]
    drv.find_element(By.CSS_SELECTOR, "input[data-testid=username]").send_keys("neo4j")
    form[0].send_keys(server["password"])
    # A connect attempt can fail while a just-started server (on a busy machine) still settles, and
    # Browser then shows the form again: a user clicks Connect again, and so does this test (3 tries).
    for attempt in range(3):
        drv.find_element(By.CSS_SELECTOR, "button[data-testid=connect]").click()
        try:
            _wait("the :config frame", lambda: _frame(drv, ":config autoComplete: false"), timeout=30.0)
            break
        except AssertionError:
            still_form = drv.find_elements(By.CSS_SELECTOR, "button[data-testid=connect]")
            if attempt == 2 or not still_form:
                page = drv.execute_script("return document.body.innerText")[-600:]
                raise AssertionError(f"Browser: no :config frame after connecting; the page ends: {page!r}") from None
    style = _wait("the :style frame", lambda: _frame(drv, ":style {"))
    assert "node.Perturbation" in style.text and "relationship.MOVES" in style.text
    assert _errors(drv) == []


def _doc_query(server) -> str:
    """What docs/browser.md pastes: `stcg query show example_graph | grep -v '^:param'`."""
    shown = _stcg("query", "show", "example_graph", env=server["env"])
    assert shown.returncode == 0, shown.stderr
    query = "\n".join(line for line in shown.stdout.splitlines() if not line.startswith(":param"))
    assert "@include" not in query and "MATCH (r:Run)" in query
    return query


def _param_statuses(drv) -> list[str]:
    return [
        e.get_attribute("title") for e in drv.find_elements("css selector", "[data-testid=multi-statement-list-icon]")
    ]


def test_structural_view_as_the_doc_says(server, browser, example_id, tmp_path):
    drv = browser
    params = _doc_params(example_id)
    assert params.count(";") == params.count(":param") == 5  # each line ends with ';' (else "Unexpected \n")
    _paste_and_run(drv, params)
    _wait("the five :param results", lambda: _param_statuses(drv) == ["Status: success"] * 5)
    query = _doc_query(server)
    _paste_and_run(drv, query)
    frame = _wait("the graph", lambda: (f := _frame(drv, "// name: example_graph")) and _drawn(drv, f)["nodes"] and f)
    time.sleep(1)  # let the layout settle before the screenshot
    expected = _expected(
        server["settings"], query, run_id=None, example_id=example_id, view="structural", method="attention", max_rank=3
    )
    assert set(expected["labels"]) == {"Example", "Token", "Region"}
    assert set(expected["types"]) == {"HAS_TOKEN", "ATTENDS"}
    _check_view(drv, frame, expected, "structural", tmp_path)


@pytest.mark.parametrize(
    "view, labels, types",
    [
        ("temporal", {"Example", "Timestep", "Region", "Token"}, {"HAS_STEP", "ATTENDS", "NEXT", "ATTENDS_TOKEN"}),
        ("counterfactual", {"Example", "Perturbation", "Region"}, {"HAS_PERTURBATION", "MOVES"}),
    ],
)
def test_other_views_by_rerunning_the_frame(server, browser, example_id, tmp_path, view, labels, types):
    from selenium.webdriver.common.by import By

    drv = browser
    frame = _frame(drv, "// name: example_graph")
    assert frame is not None, "test_structural_view_as_the_doc_says draws the first view"
    before = _drawn(drv, frame)
    _paste_and_run(drv, f':param view => "{view}";')
    _wait(f"the :param view frame ({view})", lambda: _frame(drv, f':param view => "{view}"'))
    button = frame.find_element(By.CSS_SELECTOR, "[data-testid=rerunFrameButton]")
    # the new :param frame shifts the stream while it animates in, and another frame's "Pin at top"
    # button can sit over this one for a moment: scroll it into view and click it as a script does
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", button)

    def redrawn():
        f = _frame(drv, "// name: example_graph")
        drawn = f and _drawn(drv, f)
        return f if drawn and drawn["nodes"] and drawn != before else None

    frame = _wait(f"the {view} view", redrawn)
    time.sleep(1)
    expected = _expected(
        server["settings"],
        _doc_query(server),
        run_id=None,
        example_id=example_id,
        view=view,
        method="attention",
        max_rank=3,
    )
    assert set(expected["labels"]) == labels and set(expected["types"]) == types
    _check_view(drv, frame, expected, view, tmp_path)
