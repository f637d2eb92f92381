"""Text from datasets is untrusted (issue 22 items 1 and 8): a field that is not valid Unicode (a JSON
``\\udfff`` escape), not text, or longer than ``MAX_TEXT_CHARS`` makes ITS example a failed example with
the reason, on both sinks; the run completes and every other example is written.

Real VQA-v2-format files (the official JSON, COCO image names), the tiny BLIP-2 checkpoint, the real
Neo4j server (Bolt sink) and real neo4j-admin import files (CSV sink).
"""

from __future__ import annotations

import json

import pytest

from ingest.bulk import CsvFolder, prepare_import
from stcg.datasets import MAX_TEXT_CHARS, check_text, open_dataset
from tests.conftest import ingest_fixture_run
from tests.vqa_fixtures import make_vqa_v2_folder

KW = dict(deletion_steps=2, top_k=3, perturbations="center_mask", batch_size=4)
SURROGATE = "\udfff"

# question id -> (what is broken, the reason's start)
BROKEN = {
    1000: ("question", "question is not valid Unicode (lone surrogate U+DFFF at character 11)"),
    1001: ("answer", "answer 3 is not valid Unicode (lone surrogate U+DFFF at character 0)"),
    1002: ("question_type", "question type is not valid Unicode (lone surrogate U+DFFF at character 4)"),
    1003: ("answer_type", "answer type is not valid Unicode"),
    1004: ("question_id", "example id is not valid Unicode"),
    1005: ("image_id", "image_id '7\\udfff' is not a number"),
    1006: ("long question", f"question has 5,000,000 characters (at most {MAX_TEXT_CHARS:,})"),
    1007: ("long answer", f"answer 1 has {MAX_TEXT_CHARS + 1:,} characters (at most {MAX_TEXT_CHARS:,})"),
}


def _hostile_folder(root):
    """12 questions (4 images x 3); 8 of them carry one broken field each (``BROKEN``), 4 are fine."""
    folder = make_vqa_v2_folder(root, n_images=4, questions_per_image=3)
    qfile = folder / "v2_OpenEnded_mscoco_val2014_questions.json"
    afile = folder / "v2_mscoco_val2014_annotations.json"
    qs, anns = json.loads(qfile.read_text()), json.loads(afile.read_text())
    q = {x["question_id"]: x for x in qs["questions"]}
    a = {x["question_id"]: x for x in anns["annotations"]}
    q[1000]["question"] = "what color " + SURROGATE + " is it?"
    a[1001]["answers"][2]["answer"] = SURROGATE + "red"
    a[1002]["question_type"] = "what" + SURROGATE
    a[1003]["answer_type"] = SURROGATE
    q[1004]["question_id"] = a[1004]["question_id"] = "1004" + SURROGATE
    q[1005]["image_id"] = "7" + SURROGATE
    q[1006]["question"] = "x" * 5_000_000
    a[1007]["answers"][0]["answer"] = "y" * (MAX_TEXT_CHARS + 1)
    # json.dumps writes a lone surrogate as its \\udfff escape: valid JSON, not valid Unicode
    qfile.write_text(json.dumps(qs))
    afile.write_text(json.dumps(anns))
    assert "\\udfff" in qfile.read_text()
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return _hostile_folder(tmp_path_factory.mktemp("hostile") / "vqa")


def _reasons(examples) -> dict[str, str]:
    return {e.example_id: e.invalid for e in examples if e.invalid}


def test_check_text_marks_each_broken_example_and_nothing_else(hostile):
    examples = open_dataset(f"vqa-v2:{hostile}")
    reasons = _reasons(examples)
    assert len(examples) == 12 and len(reasons) == 8
    for qid, (_, why) in BROKEN.items():
        (found,) = [r for i, r in reasons.items() if i.startswith(f"vqa-v2:val2014:{qid}")]
        assert why in found, (qid, found)
    for e in examples:  # every field of every example is now storable: UTF-8 encodable, within the maximum
        for text in (e.example_id, e.image_id, e.image_path, e.question, e.question_type, e.answer_type, *e.answers):
            text.encode("utf-8")
            assert len(text) <= MAX_TEXT_CHARS
    ids = [e.example_id for e in examples]
    assert len(set(ids)) == 12 and "vqa-v2:val2014:1004\\udfff" in ids  # the escape is visible, and distinct
    fine = [e for e in examples if not e.invalid]
    assert all(check_text(e) is e for e in fine)
    # exactly at the maximum is fine; one more is not
    at_max = check_text(fine[0].__class__(**{**fine[0].__dict__, "question": "q" * MAX_TEXT_CHARS}))
    assert at_max.invalid is None


def test_the_bolt_sink_records_them_as_failed_and_completes(hostile, tiny_checkpoint, run_id, driver, tmp_path):
    summary = ingest_fixture_run(hostile, tiny_checkpoint, run_id, tmp_path / "store", **KW)
    assert (summary.status, summary.written, summary.failures) == ("complete", 4, 8)
    with driver.session() as s:
        rows = s.run(
            "MATCH (:Run {uid: $r})-[:HAS_EXAMPLE]->(e:Example) "
            "RETURN e.example_id AS id, e.complete AS complete, e.failed AS failed, e.error AS error, "
            "e.question AS question",
            r=run_id,
        ).data()
    assert len(rows) == 12 and sum(1 for r in rows if r["complete"]) == 4
    failed = {r["id"]: r for r in rows if r["failed"]}
    assert len(failed) == 8
    for qid, (_, why) in BROKEN.items():
        (row,) = [r for i, r in failed.items() if i.startswith(f"vqa-v2:val2014:{qid}")]
        assert row["error"].startswith("invalid text: ") and why in row["error"], row["error"]
    assert failed["vqa-v2:val2014:1000"]["question"] == "what color \\udfff is it?"
    lines = [json.loads(x) for x in (tmp_path / "store" / run_id / "failures.jsonl").read_text().splitlines()]
    assert sorted(x["example_id"] for x in lines) == sorted(failed)


def test_the_csv_sink_records_them_as_failed_and_completes(hostile, tiny_checkpoint, tmp_path):
    csv_dir = tmp_path / "csv"
    summary = ingest_fixture_run(hostile, tiny_checkpoint, "text-run", tmp_path / "store", sink=f"csv:{csv_dir}", **KW)
    assert (summary.status, summary.written, summary.failures) == ("complete", 4, 8)
    status = CsvFolder(csv_dir).example_status("text-run")["text-run"]
    assert sorted(status.values()) == ["complete"] * 4 + ["failed"] * 8
    text = "".join(p.read_text(encoding="utf-8") for p in (csv_dir / "parts").rglob("Example.*.failed.csv"))
    assert "invalid text: question is not valid Unicode" in text and "what color \\udfff is it?" in text
    plan = prepare_import(csv_dir)
    assert plan["nodes"]["Example"] == 12 and plan["runs"] == ["text-run"]
