"""The single-process driver: model work in the calling thread, a writer thread draining a bounded queue
of finished batches into the file store and the sink (building the rows too), so the model never waits
for either while they keep up; on a GPU the next batch is read and prepared while the model works."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ingest.config import IngestConfig, IngestSummary
from ingest.lifecycle import announce, end_run, record_params, start_run
from ingest.steps import batch_rows, explain_batch, load_batch, note_failure, record_failure


def ingest_threads(
    cfg: IngestConfig, model_name: str, examples: list, total: int, sink, log, progress
) -> IngestSummary:
    from stcg_model.engine.core import STCGEngine
    from stcg_model.families.loading import load_model

    ecfg = cfg.engine
    start = start_run(cfg, model_name, examples, total, sink, log)
    try:
        lm = load_model(model_name, device=ecfg.device, dtype=ecfg.dtype_arg)  # the run's model, default included
        with STCGEngine.from_config(lm, ecfg) as engine:
            record_params(start, engine, sink)
            announce(start, cfg, model_name, log)
            t0 = time.time()
            explain_and_write(cfg, engine, start.store, sink, start.run_id, start.todo, start.summary, progress)
        return end_run(cfg, start, sink, log, t0)
    finally:
        start.close()


def explain_and_write(cfg, engine, store, sink, run_id: str, todo: list, summary, progress: bool) -> None:
    """The model loop (this thread) and the writer thread (file store, rows, the sink) for ``todo``."""
    from tqdm.auto import tqdm

    from stcg_model.engine.core import prefetched

    top_k = cfg.engine.top_k
    q: queue.Queue = queue.Queue(maxsize=max(1, cfg.queue_size))
    errors: list[BaseException] = []

    def drain():
        """The writer thread: file store, rows and Neo4j, so the model thread never waits on them."""
        while True:
            item = q.get()
            if item is None:
                return
            try:
                if not errors:
                    sink.write(batch_rows(store, run_id, top_k, *item))
            except BaseException as e:  # surfaced in the main thread
                errors.append(e)

    thread = threading.Thread(target=drain, name="neo4j-writer", daemon=True)
    thread.start()

    def log_failure(ex, reason):
        note_failure(summary, ex.example_id, reason)
        record_failure(store, ex, reason)

    bar = tqdm(total=len(todo), desc="ingest", unit="ex", disable=not progress)
    batches = [todo[s : s + cfg.batch_size] for s in range(0, len(todo), cfg.batch_size)]
    ahead = ThreadPoolExecutor(1, thread_name_prefix="stcg-prefetch")
    try:
        # on a GPU the next batch is read and prepared while the model works on this one
        for (inputs, failed, host), batch in zip(
            prefetched(ahead if engine.prefetch else None, lambda b: load_batch(engine, b), batches), batches
        ):
            if errors:
                break
            for ex, reason in failed:
                log_failure(ex, reason)
            graphs = []
            if inputs:
                graphs, broken = explain_batch(engine, batch, inputs, host)
                for ex, reason in broken:
                    log_failure(ex, reason)
                failed.extend(broken)
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
