"""Constraints and indexes of the STCG graph (the contract is written out in docs/schema.md).

Every node carries a stable string key ``uid`` built from run, example and element, so writes
use MERGE and a rerun never duplicates anything.
"""

from __future__ import annotations

from neo4j import Driver

# The one list of the graph's node labels: a run, its examples, and each example's children in the
# order the writer creates them (``ingest.rows.NODE_LISTS`` names the payload list of each child).
EXAMPLE_CHILDREN = ("Region", "Token", "Timestep", "Perturbation", "Explanation")
GRAPH_LABELS = ("Run", "Example", *EXAMPLE_CHILDREN)
NODE_LABELS = (*GRAPH_LABELS, "Stats")  # with the run's statistics node (``ingest.stats``)

CONSTRAINTS: dict[str, str] = {
    f"stcg_{label.lower()}_uid": f"CREATE CONSTRAINT stcg_{label.lower()}_uid IF NOT EXISTS "
    f"FOR (n:{label}) REQUIRE n.uid IS UNIQUE"
    for label in NODE_LABELS
}
# other uniqueness constraints: two run names equal up to case and Unicode normalisation would share
# a store folder on a case-insensitive file system, so ``Run.name_key`` (``ingest.runs.run_name_key``)
# is unique
KEY_CONSTRAINTS: dict[str, str] = {
    "stcg_run_name_key": "CREATE CONSTRAINT stcg_run_name_key IF NOT EXISTS FOR (n:Run) REQUIRE n.name_key IS UNIQUE",
    # the lease of a command writing into a run (ingest.lease): bookkeeping, not part of the graph's contract
    "stcg_writer_uid": "CREATE CONSTRAINT stcg_writer_uid IF NOT EXISTS FOR (n:Writer) REQUIRE n.uid IS UNIQUE",
}

INDEXES: dict[str, str] = {
    "stcg_run_name": "CREATE INDEX stcg_run_name IF NOT EXISTS FOR (n:Run) ON (n.name)",
    "stcg_example_run": "CREATE INDEX stcg_example_run IF NOT EXISTS FOR (n:Example) ON (n.run_id, n.complete)",
    "stcg_example_qtype": "CREATE INDEX stcg_example_qtype IF NOT EXISTS FOR (n:Example) ON (n.question_type)",
    "stcg_token_word": "CREATE INDEX stcg_token_word IF NOT EXISTS FOR (n:Token) ON (n.word)",
    "stcg_perturbation_kind": "CREATE INDEX stcg_perturbation_kind IF NOT EXISTS FOR (n:Perturbation) ON (n.kind)",
    "stcg_explanation_method": "CREATE INDEX stcg_explanation_method IF NOT EXISTS FOR (n:Explanation) ON (n.method)",
}


def ensure_schema(driver: Driver, database: str | None = None) -> list[str]:
    """Create every constraint and index that is missing; returns the names ensured."""
    with driver.session(database=database) as session:
        for statement in (*CONSTRAINTS.values(), *KEY_CONSTRAINTS.values(), *INDEXES.values()):
            session.run(statement).consume()
        session.run("CALL db.awaitIndexes(120)").consume()
    return [*CONSTRAINTS, *KEY_CONSTRAINTS, *INDEXES]
