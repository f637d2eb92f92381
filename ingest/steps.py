"""One batch's steps, shared by both drivers (``ingest.drivers.threads``, ``ingest.drivers.ray_data``):
read a batch (images, masks, the engine's host work), explain it (isolating an example that breaks the
batch), record failures, and turn the result into the batch's file-store shard and ``GraphRows``."""

from __future__ import annotations

from stcg.errors import StcgError


def one_line(text: str, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def store_error(store, what: str, e: OSError) -> StcgError:
    return StcgError(f"cannot write {what} in the file store {store.dir}: {e.strerror or e}; check --store")


def example_mask(ex, image):
    """The example's ground-truth mask as (H, W) bool, checked against its image, or None."""
    import numpy as np

    mask = ex.load_mask()
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (image.height, image.width):
        raise StcgError(
            f"ground-truth mask is {mask.shape[1] if mask.ndim > 1 else '?'} x {mask.shape[0]} px "
            f"but the image is {image.width} x {image.height}"
        )
    return mask


def load_inputs(batch):
    """VQAInputs for a batch, and (example, reason) for those that cannot be read."""
    from stcg_model.engine.core import VQAInput

    inputs, failures = [], []
    for ex in batch:
        try:
            if ex.invalid:  # text that no sink can store (stcg.datasets.check_text)
                raise StcgError(f"invalid text: {ex.invalid}")
            if not ex.question or not ex.question.strip():
                raise StcgError("empty question")
            image = ex.load_image()
            meta = ex.meta()
            meta["question_chars"] = len(ex.question)
            inputs.append(VQAInput(ex.example_id, image, ex.question, meta, example_mask(ex, image)))
        except StcgError as e:
            failures.append((ex, str(e)))
        except Exception as e:  # an unexpected reader error must not stop the run
            failures.append((ex, f"{type(e).__name__}: {e}"))
    return inputs, failures


def load_batch(engine, batch: list) -> tuple[list, list, object]:
    """Reading a batch's images and the engine's host work (perturbed images, pixel tensors):
    ``(inputs, [(example, reason)] that could not be read, HostBatch or None)``. Needs only the engine's
    processor and settings, not its weights (the Ray path runs it in CPU tasks with a weightless engine)."""
    inputs, failed = load_inputs(batch)
    host = None
    if inputs:
        try:
            host = engine.prepare_batch(inputs)
        except Exception:  # explain_batch redoes it example by example and records the culprit
            host = None
    return inputs, failed, host


def explain_batch(engine, batch: list, inputs: list, host) -> tuple[list, list]:
    """``(STCGs, [(example, reason)])`` of one batch: the whole batch in one pass, else example by example so
    that only the example that breaks it fails (``model: <error>``)."""
    try:
        return engine.explain_batch(inputs, host), []
    except Exception:
        graphs, failed = [], []
        for inp in inputs:  # isolate the example that breaks the batch
            try:
                graphs.extend(engine.explain_batch([inp]))
            except Exception as e:
                ex = next(b for b in batch if b.example_id == inp.example_id)
                failed.append((ex, f"model: {type(e).__name__}: {str(e)[:200]}"))
        return graphs, failed


def record_failure(store, ex, reason: str) -> None:
    """One line of ``failures.jsonl`` (appended atomically: concurrent Ray workers share the file)."""
    try:
        store.record_failure(ex.example_id, reason, {"image_path": ex.image_path, "question": ex.question[:200]})
    except OSError as e:
        raise store_error(store, "failures.jsonl", e) from None


def batch_rows(store, run_id: str, top_k: int, graphs: list, failed: list):
    """The ``GraphRows`` of one batch: its file-store shard first (the Example nodes point into it), then the
    examples' subgraphs and the failed examples' rows."""
    from ingest.rows import GraphRows, failure_rows, graph_rows

    rows = GraphRows()
    if graphs:
        try:
            refs = store.write_shard([g.to_record() for g in graphs])
        except OSError as e:
            raise store_error(store, "a shard", e) from None
        for g in graphs:
            rows.extend(graph_rows(g, run_id, top_k, refs[g.example_id]))
    for ex, reason in failed:
        meta = {
            "question": ex.question[:2000],
            "question_type": ex.question_type,
            "answer_type": ex.answer_type,
            "image_path": ex.image_path,
        }
        rows.extend(failure_rows(run_id, ex.example_id, reason, meta))
    return rows


def note_failure(summary, example_id: str, reason: str) -> None:
    """Count a failed example in the run's ``IngestSummary`` (the first reason kept for the error line)."""
    summary.failures += 1
    summary.failed_ids.append(example_id)
    if not summary.first_reason:
        summary.first_reason = reason
