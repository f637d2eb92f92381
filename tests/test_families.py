"""Model families: detected from a checkpoint's config, one line for an architecture none explains, and a
registry a new family joins with one entry (stcg_model/families/registry.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from stcg.errors import StcgError
from stcg_model.families.loading import checkpoint_config, load_model, weightless_model
from stcg_model.families.registry import (
    ModelFamily,
    family_for,
    family_of,
    model_families,
    register_family,
    supported,
    unregister_family,
)

SUPPORTED = (
    "supported: BLIP-2 (Blip2ForConditionalGeneration), InstructBLIP (InstructBlipForConditionalGeneration), "
    "LLaVA / VipLlava (LlavaForConditionalGeneration, VipLlavaForConditionalGeneration), "
    "Qwen2-VL / Qwen2.5-VL (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration)"
)


@pytest.fixture(scope="module")
def unknown_folder(tmp_path_factory):
    """A checkpoint folder of an architecture no family explains: a tiny PaliGemma config, as saved."""
    from transformers import GemmaConfig, PaliGemmaConfig, SiglipVisionConfig

    cfg = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        ).to_dict(),
        text_config=GemmaConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        ).to_dict(),
    )
    cfg.architectures = ["PaliGemmaForConditionalGeneration"]  # as save_pretrained of the model writes it
    folder = tmp_path_factory.mktemp("paligemma")
    cfg.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "paligemma"
    return folder


def test_blip2_checkpoints_are_the_blip2_family(tiny_checkpoint):
    from stcg_model.families.blip2 import family as blip2_family
    from stcg_model.testing.tiny import tiny_blip2

    cfg = checkpoint_config(tiny_checkpoint)
    assert family_of(cfg).name == "blip2"
    for lm in (tiny_blip2("t5", seed=1), tiny_blip2("opt", seed=1)):
        assert family_for(lm) is blip2_family  # from a LoadedModel, its model or its config alike
        assert family_for(lm.model) is family_for(lm.model.config) is blip2_family
    assert [f.name for f in model_families()][0] == "blip2"


def test_an_unsupported_architecture_is_one_line_naming_the_supported_ones(unknown_folder):
    for call in (checkpoint_config, load_model, weightless_model):
        with pytest.raises(StcgError) as e:
            call(str(unknown_folder))
        msg = str(e.value)
        assert (
            "\n" not in msg and f"{unknown_folder} is a paligemma checkpoint (PaliGemmaForConditionalGeneration)" in msg
        ), msg
        assert msg.endswith(f"which no model family here explains; {SUPPORTED}"), msg


def test_the_command_line_says_so_in_one_line_before_any_work(unknown_folder, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "stcg_cli.main", "ingest", "--model", str(unknown_folder), "--limit", "1"]
        + ["--sink", f"csv:{tmp_path / 'csv'}", "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env={**os.environ, "NEO4J_URI": "bolt://127.0.0.1:1"},  # nothing may reach a database either
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "paligemma checkpoint" in lines[0] and SUPPORTED in lines[0], lines
    assert not (tmp_path / "csv").exists() and not (tmp_path / "store").exists()  # refused before any work


def test_weightless_model_reads_no_weights(tiny_checkpoint):
    lm = weightless_model(tiny_checkpoint)
    assert {p.device.type for p in lm.model.parameters()} == {"meta"}
    assert lm.processor.tokenizer is not None and lm.dtype == torch.float32 and lm.device.type == "cpu"


def test_a_new_family_is_one_registry_entry():
    toy = ModelFamily(
        "toy", "Toy-VL", ("toy-vl",), ("ToyForConditionalGeneration",), "stcg_model.families.blip2.family"
    )
    register_family(toy)
    try:
        assert family_of(SimpleNamespace(model_type="toy-vl")) is toy
        assert "Toy-VL (ToyForConditionalGeneration)" in supported()
        from stcg_cli.engine_options import model_help

        assert (
            "Qwen2_5_VLForConditionalGeneration), Toy-VL (ToyForConditionalGeneration); or a shipped one"
            in model_help()
        )
        with pytest.raises(ValueError, match="already belong to the blip2 family"):
            register_family(ModelFamily("other", "Other", ("blip-2",), ("X",), "x"))
    finally:
        unregister_family("toy")
    with pytest.raises(StcgError, match=re.escape(SUPPORTED) + "$"):
        family_of(SimpleNamespace(model_type="toy-vl", architectures=["ToyForConditionalGeneration"]))


def test_shipped_checkpoints_answer_to_their_names():
    """``--model scenes-llava`` (and ``demo``, ``scenes``) name the shipped folders: the family comes from
    the folder's config and the run fingerprint from its content, as for the path itself."""
    from stcg_model.families.loading import EMBEDDED, model_fingerprint

    for name, folder in EMBEDDED.items():
        if not (folder / "config.json").is_file():
            continue
        assert family_of(checkpoint_config(name)).name == family_of(checkpoint_config(str(folder))).name
        assert model_fingerprint(name) == model_fingerprint(str(folder))
    assert family_of(checkpoint_config("scenes-llava")).name == "llava"
    assert family_of(checkpoint_config("scenes")).name == "blip2"
