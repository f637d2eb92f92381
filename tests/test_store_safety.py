"""The file store never writes through a link or into a folder someone else can write (issue 22 item 3).

The attack: on a shared ``--store``, another local user pre-makes a run's folder (run ids derived from the
command line are predictable), world-writable, with ``failures.jsonl`` a symbolic link to one of the
victim's files; the victim's ingest then appended its failures to that file. Real files, real ingests.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stcg.errors import StcgError
from stcg.filestore import FileStore
from tests.vqa_fixtures import make_vqa_v2_folder


def _premade(root, run, mode=0o700):
    d = root / run
    (d / "shards").mkdir(parents=True)
    os.chmod(d / "shards", 0o700)
    os.chmod(d, mode)
    return d


def test_a_symlinked_store_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("failures.jsonl", "run.json"):
        d = _premade(tmp_path / f"store-{name}", "r1")
        (d / name).symlink_to(victim)
        with pytest.raises(StcgError, match=rf"through .*r1/{name}: it is a symbolic link"):
            FileStore.create(tmp_path / f"store-{name}", "r1")
    assert victim.read_text() == "precious\n"


def test_a_link_planted_after_the_store_was_opened_is_not_followed(tmp_path):
    """A link made between the checks and the write: O_NOFOLLOW refuses it at the write itself."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store = FileStore.create(tmp_path / "store", "r1")
    (store.dir / "failures.jsonl").symlink_to(victim)
    with pytest.raises(StcgError, match="it is a symbolic link"):
        store.record_failure("ex1", "reason")
    (store.dir / "run.json").symlink_to(victim)
    with pytest.raises(StcgError, match="it is a symbolic link"):
        store.write_run({"run_id": "r1"})
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize(
    "make,why",
    [
        (lambda root: _premade(root, "r1", 0o777), r"r1: it is writable by group or others \(mode 0777\)"),
        (lambda root: _premade(root, "r1", 0o770), r"r1: it is writable by group or others \(mode 0770\)"),
        (lambda root: os.symlink(_premade(root.parent / "elsewhere", "x"), root / "r1"), "r1: it is a symbolic link"),
        (lambda root: (root / "r1").write_text(""), "r1: it is not a folder"),
        (lambda root: os.chmod(_premade(root, "r1") / "shards", 0o777), "shards: it is writable by group or others"),
    ],
    ids=["world-writable", "group-writable", "symlinked", "a-file", "shards-world-writable"],
)
def test_an_unsafe_run_folder_is_refused(tmp_path, make, why):
    root = tmp_path / "store"
    root.mkdir()
    make(root)
    with pytest.raises(StcgError, match=why) as e:
        FileStore.create(root, "r1")
    assert "\n" not in str(e.value)


def test_a_private_premade_run_folder_is_used(tmp_path):
    d = _premade(tmp_path / "store", "r1")
    store = FileStore.create(tmp_path / "store", "r1")
    store.record_failure("ex1", "reason")
    assert (d / "failures.jsonl").stat().st_mode & 0o777 == 0o600


def test_ingest_into_a_planted_run_folder_stops_in_one_line_before_any_work(tmp_path, tiny_checkpoint, run_id):
    folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=1, questions_per_image=1)
    (folder / "val2014" / next(p.name for p in (folder / "val2014").iterdir())).unlink()  # a failure to record
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    d = _premade(tmp_path / "store", run_id, 0o777)
    (d / "failures.jsonl").symlink_to(victim)
    cmd = [sys.executable, "-m", "stcg_cli.main", "ingest", "--dataset", f"vqa-v2:{folder}", "--model",
           tiny_checkpoint, "--device", "cpu", "--run-name", run_id, "--store", str(tmp_path / "store"), "--quiet"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"error: refusing to write the file store through {d.resolve()}: it is writable by group or others "
        "(mode 0777); another user could redirect what ingestion writes. Remove it (or choose another --store)"
    ], res.stderr
    assert victim.read_text() == "precious\n"
