"""Golden values of the STCG engine: every array of every STCGraph, bit for bit.

Recorded with the engine as it was before it was split into modules (issue 14 point 6), so a
refactor that changes any number fails here. Three models: the tiny seeded T5 checkpoint
(``tiny_checkpoint``), a tiny random OPT, and the shipped demo model (T5, trained: its answers
change under perturbations, so the perturbed-answer paths run too); 3 examples each, all six
perturbations, 4 deletion steps, batches of 2 (a full and a partial batch). The pass level is
checked too: rows teacher-forced on answers that are not their greedy ones (the separate
teacher-forced pass).

Each array is stored as one string: dtype, shape, sha256 of its bytes (first 32 hex digits) and its
float64 sum (``tests/golden/engine_golden.json``). The bytes are compared exactly on the kind of CPU and the torch release the file was made
with (torch's CPU capability, e.g. AVX512, and torch's major.minor); on another, kernels and
Gaussian-noise draws may differ in the last bits (docs/stcg.md), so there only the sums are compared, to
``rtol=1e-4`` (``atol=1e-5``: sums of signed differences cancel to noise).

Regenerate (only when numbers are MEANT to change, with ``RESULTS_VERSION`` bumped):
``STCG_WRITE_GOLDEN=1 .venv/bin/pytest tests/test_engine_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stcg_model.engine.core import STCGEngine, VQAInput

GOLDEN = Path(__file__).parent / "golden" / "engine_golden.json"
WRITE = os.environ.get("STCG_WRITE_GOLDEN") == "1"
QUESTIONS = ["What color is the shape?", "is the triangle blue?", "what shape is in the image?"]


def _random_examples() -> list[VQAInput]:
    """3 seeded random images; the third is wider than ``max_side`` (downscaled before perturbing)."""
    rng = np.random.default_rng(0)
    sizes = [(36, 48), (41, 45), (30, 1100)]
    return [
        VQAInput(f"g{i}", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)), q, {"i": i})
        for i, ((h, w), q) in enumerate(zip(sizes, QUESTIONS))
    ]


def _demo_examples() -> list[VQAInput]:
    from stcg.datasets import load_easy_vqa

    test = load_easy_vqa("test")
    return [VQAInput(x.example_id, x.load_image().convert("RGB"), x.question) for x in (test[i] for i in range(3))]


def _array_digest(a: np.ndarray) -> str:
    """``"array <dtype> <shape> <sha256 of the bytes, 32 hex> <float64 sum>"``, e.g. ``"array float32 4x16 9d1a... 4.0"``."""
    a = np.ascontiguousarray(a)
    shape = "x".join(map(str, a.shape)) or "scalar"
    return (
        f"array {a.dtype} {shape} {hashlib.sha256(a.tobytes()).hexdigest()[:32]} {float(a.astype(np.float64).sum())!r}"
    )


def _graph_digest(g) -> dict:
    meta = g._meta_dict()
    meta["params"] = {**meta["params"], "model": "<model>"}  # a temporary folder for the tiny checkpoint
    return {"meta": json.loads(json.dumps(meta)), "arrays": {k: _array_digest(v) for k, v in g.arrays().items()}}


def _forced_pass_digest(engine: STCGEngine) -> dict:
    """One batched pass whose rows are teacher-forced on targets that are not their greedy answers."""
    host = engine.prepare_batch(_random_examples()[:2])
    targets = [[5, 7, 1] if r % 2 else [9, 1] for r in range(len(host.rows))]
    with torch.no_grad():
        res = engine._run_pass(host.rows, answers=targets, per_example=1, pv=host.pixel_values)
    out = {"greedy": res.greedy}
    for name in ("C", "E", "D", "step_logprob"):
        out[name] = [_array_digest(x) for x in getattr(res, name)]
    return out


def _compute(tiny_checkpoint: str) -> dict:
    from stcg_model.families.loading import load_model
    from stcg_model.testing.tiny import tiny_blip2

    cases = {
        "t5_tiny_checkpoint": (load_model(tiny_checkpoint, device="cpu"), {}, _random_examples()),
        "opt_tiny": (tiny_blip2("opt", seed=5), {"min_new_tokens": 1}, _random_examples()),
        "t5_demo": (load_model(None, device="cpu"), {}, _demo_examples()),
    }
    out = {}
    for name, (lm, attrs, examples) in cases.items():
        engine = STCGEngine(lm, seed=7, deletion_steps=4, max_new_tokens=4)
        for k, v in attrs.items():  # opt: random weights stop at once; force answers of several steps
            setattr(engine, k, v)
        out[name] = {
            "graphs": [_graph_digest(g) for g in engine.explain(examples, batch_size=2)],
            "forced_pass": _forced_pass_digest(engine),
        }
    return out


def _machine() -> dict:
    """What the bits depend on: the CPU's kernels and torch's (torch 2.15 rounds a few kernels differently
    from the torch this file was recorded with, on the same AVX512 CPU; a file without the key is exact
    on no torch)."""
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2]),
    }


def _compare(got, want, path: str, exact: bool, errors: list[str]) -> None:
    if isinstance(want, str) and want.startswith("array ") and isinstance(got, str) and got.startswith("array "):
        (_, gt, gs, gh, gsum), (_, wt, ws, wh, wsum) = got.split(" "), want.split(" ")
        if (gt, gs) != (wt, ws):
            errors.append(f"{path}: {gt} {gs} != {wt} {ws}")
        elif exact and gh != wh:
            errors.append(f"{path}: bytes differ (float64 sum {gsum} vs {wsum})")
        # atol: sums of signed differences (dW, dC, dS) cancel to ~1e-6 and carry float32 noise of that size
        # (measured 1.7e-6 across torch releases); their norms (dW_fro, dW_token) are compared to 1e-4 relative
        elif not exact and not np.isclose(float(gsum), float(wsum), rtol=1e-4, atol=1e-5):
            errors.append(f"{path}: float64 sum {gsum} vs {wsum}")
    elif isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            errors.append(f"{path}: keys {sorted(set(got) ^ set(want))} differ")
        for k in want.keys() & got.keys():
            _compare(got[k], want[k], f"{path}.{k}", exact, errors)
    elif isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        for i, (a, b) in enumerate(zip(got, want)):
            _compare(a, b, f"{path}[{i}]", exact, errors)
    elif isinstance(want, float) and isinstance(got, float) and not exact:
        if not np.isclose(got, want, rtol=1e-4, atol=1e-9):
            errors.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        errors.append(f"{path}: {got!r} != {want!r}")


def test_engine_numbers_equal_the_golden_values(tiny_checkpoint):
    got = _compute(tiny_checkpoint)
    if WRITE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({"machine": _machine(), "cases": got}, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    exact = want["machine"] == _machine()
    errors: list[str] = []
    _compare(json.loads(json.dumps(got)), want["cases"], "cases", exact, errors)
    assert not errors, f"{len(errors)} differences (exact={exact}):\n" + "\n".join(errors[:40])
