"""README's two quick-start commands are the ones CI and the Makefile actually run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_has_exactly_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert [b.strip() for b in blocks] == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: neo4j", makefile, flags=re.M) and re.search(r"^test: neo4j", makefile, flags=re.M)
