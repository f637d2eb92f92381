"""What one ingestion is: ``IngestConfig`` (the engine's settings plus what to read and where to
write), its identity and run id, and the ``IngestSummary`` a driver returns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ingest.runs import check_run_name, identity_hash
from ingest.sinks.registry import resolve_sink
from stcg.errors import StcgError
from stcg_model.engine.engine_config import EngineConfig, check_count

_ENGINE_FIELDS = frozenset(f.name for f in fields(EngineConfig))


@dataclass(init=False)
class IngestConfig:
    """One ingestion: the engine's settings (``engine``) plus what to read and where to write.

    ``IngestConfig(dataset=..., top_k=3, seed=1, ...)`` also takes every ``EngineConfig`` field by
    name (folded into ``engine``). ``engine.seed`` also seeds ``sample``. Check with ``validate()``.
    """

    engine: EngineConfig
    dataset: str = "easy-vqa"  # easy-vqa | vqa-v2:<folder> | hf:<folder or name>
    split: str | None = None
    limit: int | None = None  # >= 1: the first N selected questions
    question_type: str | None = None  # prefix filter
    answer_type: str | None = None
    sample: int | None = None  # >= 1: a seeded random sample of N questions
    shard: str | None = None  # "i/N": this worker's share
    batch_size: int = 16  # >= 1 examples per model pass
    run_name: str | None = None  # kept as given (it is the run id); None = run-<hash of the identity>
    store: str = "out/store"  # root of the dense-array file store
    queue_size: int = 4  # >= 1 finished batches waiting for the writer thread
    sink: str = "neo4j"  # a registered sink (ingest.sinks): neo4j (Bolt) | csv:<folder> (neo4j-admin import files)
    ray: str | None = None  # Ray Data (ingest.drivers.ray_data): "local" (a Ray of this machine), "auto" or an address
    workers: int | None = None  # >= 1 model actors on Ray [default: one per GPU, else one per node]
    masks: str | None = None  # ground-truth masks for datasets without their own: coco:<instances JSON> (stcg.masks)

    def __init__(
        self,
        dataset: str = "easy-vqa",
        split: str | None = None,
        limit: int | None = None,
        question_type: str | None = None,
        answer_type: str | None = None,
        sample: int | None = None,
        shard: str | None = None,
        batch_size: int = 16,
        run_name: str | None = None,
        store: str = "out/store",
        queue_size: int = 4,
        sink: str = "neo4j",
        ray: str | None = None,
        workers: int | None = None,
        masks: str | None = None,
        engine: EngineConfig | None = None,
        **engine_fields,
    ):
        unknown = set(engine_fields) - _ENGINE_FIELDS
        if unknown:
            raise TypeError(f"IngestConfig got unexpected arguments {sorted(unknown)}")
        self.engine = replace(engine or EngineConfig(), **engine_fields)
        self.dataset, self.split, self.limit = dataset, split, limit
        self.question_type, self.answer_type, self.sample, self.shard = question_type, answer_type, sample, shard
        self.batch_size, self.run_name, self.store, self.queue_size = batch_size, run_name, store, queue_size
        self.sink, self.ray, self.workers = sink, ray, workers
        self.masks = masks

    def validate(self) -> IngestConfig:
        """This config, or a one-line ``StcgError`` for the first bad value (no model, data or database needed)."""
        from stcg.datasets import parse_shard

        # whether the examples carry masks is known once they are selected (run_ingest sets it then)
        replace(self.engine, masks=True).validate()
        check_count("--limit", self.limit)
        check_count("--sample", self.sample)
        check_count("--batch-size", self.batch_size)
        check_count("queue_size", self.queue_size)
        parse_shard(self.shard)
        sink_kind, _ = resolve_sink(self.sink)
        if self.run_name is not None:
            check_run_name(self.run_name)
        check_count("--workers", self.workers)
        if self.workers is not None and self.ray is None:
            raise StcgError("--workers sets the size of the Ray actor pool; use it with --ray")
        if self.ray is not None:
            if not isinstance(self.ray, str) or not self.ray.strip():
                raise StcgError("--ray got an empty address; give none (a local Ray), auto, or HOST:PORT")
            if not sink_kind.database:
                raise StcgError(f"--ray writes to Neo4j only; --sink {self.sink} works without --ray")
        return self

    def identity(self, model_name: str, model_fingerprint: str | None = None) -> dict:
        """What determines the result (not the shard, batch size, device or store). The keys and
        values are those of the flat config this replaced, so unchanged commands keep their run ids."""
        from stcg_model.engine.core import RESULTS_VERSION

        return {
            "results_version": RESULTS_VERSION,
            "model_fingerprint": model_fingerprint,
            "dataset": self.dataset,
            "split": self.split,
            "limit": self.limit,
            "question_type": self.question_type,
            "answer_type": self.answer_type,
            "sample": self.sample,
            **({"masks": self.masks} if self.masks is not None else {}),  # absent: ids of older runs stay
            **self.engine.identity(model_name),
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
    status: str = "running"  # the Run's status at the end: complete | partial | failed
    failed_ids: list[str] = field(default_factory=list)
    first_reason: str = ""

    def describe(self) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"run {self.run_id}: {self.examples} examples selected, {self.skipped} already complete, "
            f"{self.written} written, {self.failures} failed; {self.nodes} nodes and {self.relationships} "
            f"relationships written in {self.seconds:.1f} s ({rate:.2f} examples/s)"
        )


def make_run_id(cfg: IngestConfig, model_name: str, model_fingerprint: str | None = None) -> str:
    """``--run-name`` exactly as given (checked), else ``run-<hash of the identity>``."""
    if cfg.run_name is not None:
        return check_run_name(cfg.run_name)
    return f"run-{identity_hash(cfg.identity(model_name, model_fingerprint))}"
