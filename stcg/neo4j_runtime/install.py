"""The server's jars and Java: Neo4j 5.26 and Neo4j Browser from Maven Central into a cache folder
(once), and a Java >= 17 to run them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from stcg.errors import StcgError

NEO4J_VERSION = "5.26.30"
BROWSER_VERSION = "5.24.0"
MAIN_CLASS = "org.neo4j.server.CommunityEntryPoint"
ADMIN_CLASS = "org.neo4j.cli.AdminTool"
MIN_JAVA = 17


def default_cache() -> Path:
    root = os.environ.get("STCG_CACHE_DIR") or Path.home() / ".cache" / "stcg"
    return Path(root) / f"neo4j-{NEO4J_VERSION}"


def find_java() -> str:
    """Path of a Java >= 17 executable (JAVA_HOME first, then PATH); one line if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        exe = Path(java_home) / "bin" / "java"
        if not exe.is_file():
            raise StcgError(f"JAVA_HOME={java_home} has no bin/java; install Java {MIN_JAVA}+ or fix JAVA_HOME")
        java = str(exe)
    else:
        found = shutil.which("java")
        if not found:
            raise StcgError(
                f"Java not found: install Java {MIN_JAVA}+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        java = found
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise StcgError(f"Neo4j {NEO4J_VERSION} needs Java {MIN_JAVA}+, but {java} is Java {major or '?'}")
    return java


def artifacts_ready(cache: Path) -> bool:
    """The jars of this version are complete in ``cache/lib``."""
    return (cache / ".complete").is_file() and any((cache / "lib").glob(f"neo4j-{NEO4J_VERSION}.jar"))


def fetch_artifacts(cache: Path, log=print) -> Path:
    """Resolve the server jars with Maven into ``cache/lib`` once; later calls are free."""
    lib = cache / "lib"
    if artifacts_ready(cache):
        return lib
    mvn = shutil.which("mvn")
    if not mvn:
        raise StcgError(
            "Maven (mvn) not found: it fetches the Neo4j jars from Maven Central once; install it (apt-get install maven)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    template = resources.files("stcg.neo4j_runtime").joinpath("pom.xml").read_text()
    pom = cache / "pom.xml"
    pom.write_text(template.replace("@NEO4J_VERSION@", NEO4J_VERSION).replace("@BROWSER_VERSION@", BROWSER_VERSION))
    tmp_lib = cache / "lib.partial"
    shutil.rmtree(tmp_lib, ignore_errors=True)
    log(f"Fetching Neo4j {NEO4J_VERSION} and Neo4j Browser {BROWSER_VERSION} from Maven Central into {cache} ...")
    proc = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp_lib}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise StcgError(f"Maven could not fetch the Neo4j jars: {' | '.join(tail) or 'exit ' + str(proc.returncode)}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp_lib.rename(lib)
    (cache / ".complete").write_text("\n".join(sorted(p.name for p in lib.iterdir())) + "\n")
    return lib
