"""Schema creation and a write/read round trip through the official driver, on the real server."""

from __future__ import annotations

from ingest.schema import CONSTRAINTS, INDEXES, NODE_LABELS, ensure_schema


def test_schema_constraints_exist_and_are_idempotent(driver, neo4j_settings):
    ensure_schema(driver, neo4j_settings.database)
    ensure_schema(driver, neo4j_settings.database)  # second call must not fail
    with driver.session(database=neo4j_settings.database) as s:
        rows = s.run("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties").data()
        idx = {r["name"]: r for r in s.run("SHOW INDEXES YIELD name, state").data()}
    by_name = {r["name"]: r for r in rows}
    for name in CONSTRAINTS:
        assert name in by_name, f"missing constraint {name}"
        assert by_name[name]["type"] == "UNIQUENESS"
        assert by_name[name]["properties"] == ["uid"]
    assert {by_name[n]["labelsOrTypes"][0] for n in CONSTRAINTS} == set(NODE_LABELS)
    for name in INDEXES:
        assert idx[name]["state"] == "ONLINE"


def test_uniqueness_constraint_rejects_duplicate_uid(driver, neo4j_settings, run_id):
    import neo4j.exceptions as nex
    import pytest

    ensure_schema(driver, neo4j_settings.database)
    with driver.session(database=neo4j_settings.database) as s:
        s.run("CREATE (:Region {uid: $uid, run_id: $rid})", uid=f"{run_id}/r0", rid=run_id).consume()
        with pytest.raises(nex.ConstraintError):
            s.run("CREATE (:Region {uid: $uid, run_id: $rid})", uid=f"{run_id}/r0", rid=run_id).consume()


def test_write_read_round_trip_with_hostile_text(driver, neo4j_settings, run_id):
    text = "what color'}) MATCH (n) DETACH DELETE n // ünïcödé ✓"
    weights = [0.25, 0.5, 0.125]
    with driver.session(database=neo4j_settings.database) as s:
        s.run(
            "UNWIND range(0, size($w) - 1) AS i "
            "CREATE (:Token {uid: $rid + '/t' + i, run_id: $rid, text: $text, weight: $w[i], index: i})",
            rid=run_id,
            text=text,
            w=weights,
        ).consume()
        got = s.run(
            "MATCH (t:Token {run_id: $rid}) RETURN t.text AS text, t.weight AS w ORDER BY t.index", rid=run_id
        ).data()
        total = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
    assert [r["w"] for r in got] == weights
    assert all(r["text"] == text for r in got)
    assert total >= 3  # the hostile text did not delete anything
