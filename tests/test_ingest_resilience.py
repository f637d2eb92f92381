"""Neo4j restarted in the middle of a run (a second real server), and VQA-v2 from a HF datasets copy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from neo4j import GraphDatabase

from stcg.neo4j_runtime import LocalNeo4j
from tests.vqa_fixtures import make_hf_copy, make_vqa_v2_folder

PASSWORD = "restart-pw-123"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_neo4j_restart_mid_run_loses_nothing(tmp_path, tiny_checkpoint):
    server = LocalNeo4j(
        home=tmp_path / "neo4j",
        bolt_port=_free_port(),
        http_port=_free_port(),
        password=PASSWORD,
        heap="384m",
        pagecache="64m",
    )
    server.start(log=lambda s: None)
    try:
        folder = make_vqa_v2_folder(tmp_path / "vqa", n_images=20, questions_per_image=2)
        env = {**os.environ, "NEO4J_URI": server.bolt_uri, "NEO4J_PASSWORD": PASSWORD}
        cmd = [
            sys.executable,
            "-m",
            "stcg_cli.main",
            "ingest",
            "--dataset",
            f"vqa-v2:{folder}",
            "--model",
            tiny_checkpoint,
            "--device",
            "cpu",
            "--run-name",
            "restart",
            "--store",
            str(tmp_path / "store"),
            "--batch-size",
            "1",
            "--deletion-steps",
            "0",
            "--quiet",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", PASSWORD)) as d:
            deadline = time.time() + 120
            n = 0
            while time.time() < deadline and n < 3:
                n = d.execute_query("MATCH (e:Example) WHERE e.complete RETURN count(e) AS c").records[0]["c"]
                time.sleep(0.1)
        assert n >= 3 and proc.poll() is None, "ingestion should still be running when the server goes down"
        old_pid = server.status().pid
        server.stop(log=lambda s: None)
        time.sleep(3)  # the run keeps computing; its writes fail and back off meanwhile
        assert proc.poll() is None, "ingestion must survive the database going away"
        server.start(log=lambda s: None)
        assert server.status().pid != old_pid
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "40 written, 0 failed" in out
        with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", PASSWORD)) as d:
            rec = d.execute_query(
                "MATCH (e:Example {run_id: 'restart'}) RETURN count(e) AS n, count(DISTINCT e.uid) AS u, "
                "sum(CASE WHEN e.complete THEN 1 ELSE 0 END) AS c"
            ).records[0]
            tokens = d.execute_query(
                "MATCH (:Example {run_id: 'restart'})-[h:HAS_TOKEN]->(t) RETURN count(h) AS h, count(DISTINCT t) AS t"
            ).records[0]
        assert rec["n"] == rec["u"] == rec["c"] == 40
        assert tokens["h"] == tokens["t"]  # no duplicated links
    finally:
        server.stop(log=lambda s: None)


def test_hf_datasets_copy(tmp_path, tiny_checkpoint, driver, run_id):
    from ingest.pipeline import IngestConfig, run_ingest
    from stcg.datasets import open_dataset

    path = make_hf_copy(tmp_path / "hf", n=6)
    exs = open_dataset(f"hf:{path}", split="validation")
    assert len(exs) == 6 and exs[0].question == "what color is the shape?" and len(exs[0].answers) == 10
    assert (
        exs[0].answer == "red" and exs[0].question_type == "what color is the" and exs[0].load_image().size == (64, 48)
    )
    summary = run_ingest(
        IngestConfig(
            dataset=f"hf:{path}",
            split="validation",
            model=tiny_checkpoint,
            device="cpu",
            run_name=run_id,
            store=str(tmp_path / "store"),
            deletion_steps=0,
        ),
        progress=False,
        log=lambda s: None,
    )
    assert summary.written == 6 and summary.failures == 0
    from stcg.errors import StcgError

    with pytest.raises(StcgError, match="has splits validation, not 'train'"):
        open_dataset(f"hf:{path}", split="train")
