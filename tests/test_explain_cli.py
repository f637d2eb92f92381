"""`stcg explain` end to end on a saved tiny checkpoint (loaded through from_pretrained), and its errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stcg_model.families.loading import load_model
from stcg_model.graph import STCGraph
from stcg_model.testing.tiny import tiny_blip2


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )


def test_loaded_checkpoint_has_capture_attention_and_equals_saved(checkpoint):
    from stcg_model.families.capture import CAPTURE_IMPL

    lm = load_model(str(checkpoint), device="cpu")
    m = lm.model
    assert m.qformer.config._attn_implementation == CAPTURE_IMPL
    assert m.language_model.encoder.config._attn_implementation == CAPTURE_IMPL
    assert m.language_model.decoder.config._attn_implementation == CAPTURE_IMPL
    assert m.vision_model.config._attn_implementation == "sdpa" and lm.dtype.is_floating_point
    from tests.conftest import TINY_SEED

    ref = tiny_blip2("t5", seed=TINY_SEED)
    for (n1, p1), (n2, p2) in zip(lm.model.state_dict().items(), ref.model.state_dict().items()):
        assert n1 == n2 and np.array_equal(p1.numpy(), p2.numpy()), n1


def test_explain_writes_pictures_and_graph(checkpoint, tmp_path):
    img = tmp_path / "shapes.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    res = run(
        "explain",
        "--image",
        str(img),
        "--question",
        "What color is the shape?",
        "--model",
        str(checkpoint),
        "--out",
        str(out),
        "--deletion-steps",
        "2",
    )
    assert res.returncode == 0, res.stderr
    assert "answer:" in res.stdout and "gaussian_noise" in res.stdout and "color" in res.stdout
    # --top-k (default 5, as in ingest): the strongest regions printed per content word
    word_lines = res.stdout.split("strongest regions (row, col: weight):\n", 1)[1].split("deletion AUC")[0]
    assert word_lines.strip() and all(line.count(": ") == 5 for line in word_lines.strip().splitlines())
    g = STCGraph.load(out / "graph.safetensors")
    assert g.question == "What color is the shape?" and g.image_size == (70, 50)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert any("word_1_color" in p for p in pngs) and sum("dW_" in p for p in pngs) == 6
    assert (out / "shapes.html").stat().st_size > 100_000  # plotly embedded: works offline


def test_explain_runs_an_opt_checkpoint(tmp_path):
    """A decoder-only (OPT) BLIP-2 saved with save_pretrained goes through the same command."""
    lm = tiny_blip2("opt", seed=4)
    ckpt = tmp_path / "opt"
    lm.model.save_pretrained(ckpt)
    lm.processor.save_pretrained(ckpt)
    img = tmp_path / "i.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    res = run(
        "explain",
        "--image",
        str(img),
        "--question",
        "is there a red circle?",
        "--model",
        str(ckpt),
        "--out",
        str(tmp_path / "out"),
        "--deletion-steps",
        "0",
        "--perturbations",
        "center_mask,color_shift",
    )
    assert res.returncode == 0, res.stderr
    g = STCGraph.load(tmp_path / "out" / "graph.safetensors")
    assert g.params["language_model"] == "decoder-only" and g.params["prompt"] == "Question: {question} Answer:"
    assert g.words == ["is", "there", "a", "red", "circle", "?"] and g.W.shape == (6, 16)
    np.testing.assert_allclose(g.W.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--image", "/nonexistent.png", "--question", "q"], "error: image not found: /nonexistent.png"),
        (["--question", "q", "--model", "/no/such/model"], "error: model folder not found: /no/such/model"),
        (["--question", "q", "--perturbations", "blurr"], "error: unknown perturbation 'blurr'"),
        (["--question", "q", "--dtype", "float16"], "error: float16 is refused for T5"),
        (["--question", "q", "--layers", "99"], "error: layer 99 is out of range for this model"),
        (
            ["--question", "q", "--perturbations", "center_mask:fraction=2"],
            "error: perturbation center_mask: fraction=2 is out of range; allowed: 0 < fraction <= 1",
        ),
        (["--question", "q", "--top-k", "0"], "error: --top-k 0 is invalid"),
    ],
)
def test_explain_bad_input_is_one_line(checkpoint, tmp_path, args, message):
    img = tmp_path / "i.png"
    Image.new("RGB", (20, 20)).save(img)
    full = (
        ["explain", "--image", str(img), "--model", str(checkpoint)] + args
        if "--image" not in args
        else ["explain", "--model", str(checkpoint)] + args
    )
    if "--model" in args:
        full = ["explain", "--image", str(img)] + args
    res = run(*full)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith(message) and "Traceback" not in res.stderr


def test_corrupt_image_is_one_line(checkpoint, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    res = run("explain", "--image", str(bad), "--question", "q", "--model", str(checkpoint))
    assert res.returncode == 2 and "not a readable image" in res.stderr and "Traceback" not in res.stderr
