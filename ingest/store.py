"""The dense-array file store of a run: every STCGraph, losslessly, in sharded safetensors files.

Layout::

    <root>/<run_id>/run.json             the run's parameters
    <root>/<run_id>/shards/part-*.safetensors   one file per written batch of examples
    <root>/<run_id>/failures.jsonl       one line per failed example (id, reason)

Inside a shard, example ``k``'s arrays are the tensors ``"<k>/<name>"``; the header metadata holds
each example's non-array fields (JSON). ``Example.store_shard`` / ``Example.store_key`` in Neo4j
point here, so queries and metrics that need full matrices never re-run the model. Shards are
written to a temporary name and renamed, so a crash never leaves a half-written shard.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from stcg_model.graph import STCGraph


class FileStore:
    def __init__(self, root: str | Path, run_id: str):
        self.root = Path(root)
        self.run_id = run_id
        self.dir = self.root / run_id
        self.shards = self.dir / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)

    def write_shard(self, graphs: Sequence[STCGraph]) -> dict[str, dict]:
        """Write one shard; returns ``{example_id: {"shard": file name, "key": str}}``."""
        from safetensors.numpy import save_file

        name = f"part-{uuid.uuid4().hex[:16]}.safetensors"
        tensors, metas, refs = {}, {}, {}
        for k, g in enumerate(graphs):
            for arr_name, arr in g.arrays().items():
                tensors[f"{k}/{arr_name}"] = arr
            metas[str(k)] = g._meta_dict()
            refs[g.example_id] = {"shard": name, "key": str(k)}
        tmp = self.shards / f".{name}.tmp"
        save_file(tensors, str(tmp), metadata={"stcgraphs": json.dumps(metas)})
        os.replace(tmp, self.shards / name)
        return refs

    def load(self, shard: str, key: str) -> STCGraph:
        from safetensors import safe_open

        with safe_open(str(self.shards / shard), framework="numpy") as f:
            meta = json.loads(f.metadata()["stcgraphs"])[key]
            prefix = f"{key}/"
            arrays = {n[len(prefix):]: f.get_tensor(n) for n in f.keys() if n.startswith(prefix)}
        return STCGraph.from_parts(meta, arrays)

    def iter_shard(self, shard: str) -> Iterator[STCGraph]:
        from safetensors import safe_open

        with safe_open(str(self.shards / shard), framework="numpy") as f:
            metas = json.loads(f.metadata()["stcgraphs"])
            names = list(f.keys())
            for key, meta in metas.items():
                prefix = f"{key}/"
                yield STCGraph.from_parts(meta, {n[len(prefix):]: f.get_tensor(n) for n in names if n.startswith(prefix)})

    def record_failure(self, example_id: str, reason: str, extra: dict | None = None) -> None:
        with (self.dir / "failures.jsonl").open("a") as f:
            f.write(json.dumps({"example_id": example_id, "reason": reason, **(extra or {})}) + "\n")

    def write_run(self, info: dict) -> None:
        (self.dir / "run.json").write_text(json.dumps(info, indent=1, default=str))
