"""Batch ingestion: dataset -> batches -> STCG engine -> rows -> Neo4j (and the file store).

Model work runs in the calling thread; a writer thread drains a bounded queue of finished STCGs
into the file store and Neo4j (building the rows too), so the model never waits for either while
they keep up. An example is visible as
complete (``Example.complete = true``) only after all its nodes and links are written. The run id
is derived from everything that determines the result, so running the same command again resumes:
complete examples are skipped and the rest are written with MERGE (no duplicates).
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stcg import __version__
from stcg.config import Neo4jSettings
from stcg.errors import StcgError


@dataclass
class IngestConfig:
    dataset: str = "easy-vqa"
    split: str | None = None
    limit: int | None = None
    question_type: str | None = None
    answer_type: str | None = None
    sample: int | None = None
    seed: int = 0
    shard: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str | None = None
    perturbations: str = "all"
    layers: str = "mean"
    prompt: str | None = None
    top_k: int = 5
    batch_size: int = 16
    deletion_steps: int = 10
    max_new_tokens: int = 10
    run_name: str | None = None
    store: str = "out/store"
    queue_size: int = 4

    def identity(self, model_name: str, model_fingerprint: str | None = None) -> dict:
        """What determines the result (not the shard, batch size, device or store)."""
        from stcg_model.engine import RESULTS_VERSION

        return {
            "results_version": RESULTS_VERSION,
            "model_fingerprint": model_fingerprint,
            "dataset": self.dataset,
            "split": self.split,
            "limit": self.limit,
            "question_type": self.question_type,
            "answer_type": self.answer_type,
            "sample": self.sample,
            "seed": self.seed,
            "model": model_name,
            "dtype": self.dtype,
            "perturbations": self.perturbations,
            "layers": self.layers,
            "top_k": self.top_k,
            "deletion_steps": self.deletion_steps,
            "max_new_tokens": self.max_new_tokens,
            **({"prompt": self.prompt} if self.prompt is not None else {}),
        }


@dataclass
class IngestSummary:
    run_id: str
    examples: int = 0
    skipped: int = 0
    written: int = 0
    failures: int = 0
    nodes: int = 0
    relationships: int = 0
    seconds: float = 0.0
    retries: int = 0
    failure_log: str = ""
    failed_ids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"run {self.run_id}: {self.examples} examples selected, {self.skipped} already complete, "
            f"{self.written} written, {self.failures} failed; {self.nodes} nodes and {self.relationships} "
            f"relationships written in {self.seconds:.1f} s ({rate:.2f} examples/s)"
        )


def identity_hash(identity: dict) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def make_run_id(cfg: IngestConfig, model_name: str, model_fingerprint: str | None = None) -> str:
    if cfg.run_name:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.run_name).strip("-")
        if not slug:
            raise StcgError(f"--run-name {cfg.run_name!r} has no usable characters (letters, digits, . _ -)")
        return slug[:80]
    return f"run-{identity_hash(cfg.identity(model_name, model_fingerprint))}"


RUN_MERGE = """
MERGE (r:Run {uid: $run_id})
ON CREATE SET r.started_at = datetime(), r.run_id = $run_id
SET r += $props, r.status = 'running', r.updated_at = datetime()
"""

RUN_FINISH = """
MATCH (r:Run {uid: $run_id})
OPTIONAL MATCH (e:Example {run_id: $run_id})
WITH r, count(CASE WHEN e.complete THEN 1 END) AS complete, count(CASE WHEN e.failed THEN 1 END) AS failed
SET r.n_complete = complete, r.n_failed = failed, r.finished_at = datetime(), r.updated_at = datetime(),
    r.status = CASE WHEN $finished THEN 'complete' ELSE 'partial' END
RETURN complete, failed
"""

DONE = "MATCH (e:Example {run_id: $run_id}) WHERE e.complete RETURN e.example_id AS id"


def _load_inputs(batch):
    """VQAInputs for a batch, and (example, reason) for those that cannot be read."""
    from stcg_model.engine import VQAInput

    inputs, failures = [], []
    for ex in batch:
        try:
            if not ex.question or not ex.question.strip():
                raise StcgError("empty question")
            image = ex.load_image()
            meta = ex.meta()
            meta["question_chars"] = len(ex.question)
            inputs.append(VQAInput(ex.example_id, image, ex.question, meta))
        except StcgError as e:
            failures.append((ex, str(e)))
        except Exception as e:  # an unexpected reader error must not stop the run
            failures.append((ex, f"{type(e).__name__}: {e}"))
    return inputs, failures


def run_ingest(
    cfg: IngestConfig, settings: Neo4jSettings | None = None, log: Callable[[str], None] = print, progress: bool = True
) -> IngestSummary:
    """Ingest ``cfg.dataset`` into Neo4j; returns counts. Bad arguments fail before any model work."""
    from tqdm.auto import tqdm

    from ingest.rows import GraphRows, failure_rows, graph_rows
    from ingest.schema import ensure_schema
    from ingest.writer import Neo4jWriter
    from stcg.datasets import open_dataset
    from stcg.db import connect
    from stcg.filestore import FileStore
    from stcg_model.engine import STCGEngine, prefetched
    from stcg_model.loading import default_model, load_model, model_fingerprint
    from stcg_model.perturbations import parse_perturbations

    if cfg.batch_size < 1 or cfg.top_k < 1:
        raise StcgError("--batch-size and --top-k must be >= 1")
    specs = parse_perturbations(cfg.perturbations)
    from stcg_model.capture import LayerSelection

    LayerSelection.parse(cfg.layers)
    if cfg.prompt is not None:
        from stcg_model.engine import check_prompt

        check_prompt(cfg.prompt)
    examples = open_dataset(
        cfg.dataset,
        split=cfg.split,
        limit=cfg.limit,
        question_type=cfg.question_type,
        answer_type=cfg.answer_type,
        sample=cfg.sample,
        seed=cfg.seed,
        shard=cfg.shard,
    )
    settings = settings or Neo4jSettings.from_env()
    driver = connect(settings)
    try:
        ensure_schema(driver, settings.database)
        model_name = cfg.model or default_model()
        fingerprint = model_fingerprint(model_name)
        identity = cfg.identity(model_name, fingerprint)
        run_id = make_run_id(cfg, model_name, fingerprint)
        summary = IngestSummary(run_id=run_id, examples=len(examples))
        writer = Neo4jWriter(driver, settings.database, log=log)
        held = writer.run_query("MATCH (r:Run {uid: $run_id}) RETURN r.identity AS identity", run_id=run_id)
        if held and held[0]["identity"] not in (None, identity_hash(identity)):
            raise StcgError(
                f"run {run_id!r} already holds results of another model or other parameters; "
                "choose another --run-name (resuming it would mix the two)"
            )
        done = {r["id"] for r in writer.run_query(DONE, run_id=run_id)}
        todo = [e for e in examples if e.example_id not in done]
        summary.skipped = len(examples) - len(todo)
        store = FileStore.create(cfg.store, run_id)
        summary.failure_log = str(store.dir / "failures.jsonl")
        lm = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
        engine = STCGEngine(
            lm,
            specs,
            layers=cfg.layers,
            seed=cfg.seed,
            max_new_tokens=cfg.max_new_tokens,
            deletion_steps=cfg.deletion_steps,
            prompt=cfg.prompt,
        )
        props = {
            "name": cfg.run_name or run_id,
            "model": model_name,
            "dataset": cfg.dataset,
            "split": cfg.split or "",
            "perturbations": [s.kind for s in specs],
            "top_k": cfg.top_k,
            "layers": cfg.layers,
            "code_version": __version__,
            "params": json.dumps({**identity, "engine": engine.params}, sort_keys=True, default=str),
            "identity": identity_hash(identity),
            "n_selected": len(examples),
        }
        writer.run_query(RUN_MERGE, run_id=run_id, props=props)
        store.write_run({"run_id": run_id, **props, "started": datetime.now(UTC).isoformat()})
        log(
            f"run {run_id}: {len(examples)} examples ({summary.skipped} already complete), model {model_name}, "
            f"perturbations {', '.join(s.kind for s in specs)}"
        )

        q: queue.Queue = queue.Queue(maxsize=max(1, cfg.queue_size))
        errors: list[BaseException] = []

        def to_rows(graphs, failed) -> GraphRows:
            """File-store shard first (the Example nodes point into it), then the graph rows."""
            rows = GraphRows()
            if graphs:
                refs = store.write_shard([g.to_record() for g in graphs])
                for g in graphs:
                    rows.extend(graph_rows(g, run_id, cfg.top_k, refs[g.example_id]))
            for ex, reason in failed:
                rows.extend(
                    failure_rows(
                        run_id,
                        ex.example_id,
                        reason,
                        {
                            "question": ex.question[:2000],
                            "question_type": ex.question_type,
                            "answer_type": ex.answer_type,
                            "image_path": ex.image_path,
                        },
                    )
                )
            return rows

        def drain():
            """The writer thread: file store, rows and Neo4j, so the model thread never waits on them."""
            while True:
                item = q.get()
                if item is None:
                    return
                try:
                    if not errors:
                        writer.write(to_rows(*item))
                except BaseException as e:  # surfaced in the main thread
                    errors.append(e)

        thread = threading.Thread(target=drain, name="neo4j-writer", daemon=True)
        thread.start()

        def log_failure(ex, reason):
            summary.failures += 1
            summary.failed_ids.append(ex.example_id)
            store.record_failure(ex.example_id, reason, {"image_path": ex.image_path, "question": ex.question[:200]})

        def load(batch):
            """Reading images and the engine's host work for a batch, in the prefetch thread."""
            inputs, failed = _load_inputs(batch)
            host = None
            if inputs:
                try:
                    host = engine.prepare_batch(inputs)
                except Exception:  # explain_batch redoes it example by example and records the culprit
                    host = None
            return inputs, failed, host

        t0 = time.time()
        bar = tqdm(total=len(todo), desc="ingest", unit="ex", disable=not progress)
        batches = [todo[s : s + cfg.batch_size] for s in range(0, len(todo), cfg.batch_size)]
        ahead = ThreadPoolExecutor(1, thread_name_prefix="stcg-prefetch")
        try:
            # on a GPU the next batch is read and prepared while the model works on this one
            for (inputs, failed, host), batch in zip(
                prefetched(ahead if engine.prefetch else None, load, batches), batches
            ):
                if errors:
                    break
                for ex, reason in failed:
                    log_failure(ex, reason)
                graphs = []
                if inputs:
                    try:
                        graphs = engine.explain_batch(inputs, host)
                    except Exception:
                        for inp in inputs:  # isolate the example that breaks the batch
                            try:
                                graphs.extend(engine.explain_batch([inp]))
                            except Exception as e:
                                ex = next(b for b in batch if b.example_id == inp.example_id)
                                log_failure(ex, f"model: {type(e).__name__}: {str(e)[:200]}")
                                failed.append((ex, str(e)))
                summary.written += len(graphs)
                q.put((graphs, failed))
                bar.update(len(batch))
        finally:
            ahead.shutdown(wait=True, cancel_futures=True)
            q.put(None)
            thread.join()
            bar.close()
        if errors:
            raise errors[0]
        finished = len(todo) == 0 or summary.written + summary.failures == len(todo)
        writer.run_query(RUN_FINISH, run_id=run_id, finished=finished and cfg.shard is None)
        summary.seconds = time.time() - t0
        summary.nodes, summary.relationships, summary.retries = (
            writer.nodes_written,
            writer.rels_written,
            writer.retries,
        )
        return summary
    finally:
        driver.close()


__all__ = ["IngestConfig", "IngestSummary", "run_ingest", "make_run_id"]
