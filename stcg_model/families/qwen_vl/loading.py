"""Load a Qwen2-VL / Qwen2.5-VL checkpoint ready for attention capture: the language model on ``CAPTURE_IMPL``,
the vision tower on SDPA, the processor's image half (``pixels.Qwen2_5_VLImageProcessor``)."""

from __future__ import annotations

import torch

from stcg_model.families.capture import register_capture_attention
from stcg_model.families.loading import LoadedModel, placed
from stcg_model.families.qwen_vl.configs import model_class
from stcg_model.families.qwen_vl.pixels import Qwen2_5_VLImageProcessor, Qwen2VLImageProcessor


def processor_class(config) -> type:
    """The image-and-text processor of a Qwen-VL config's version."""
    return Qwen2_5_VLImageProcessor if config.model_type == "qwen2_5_vl" else Qwen2VLImageProcessor


def use_capture_attention(model):
    """The language model uses ``CAPTURE_IMPL`` (SDPA, except eager with weights while its hook point
    records); the vision tower, whose weights the STCG never reads, uses SDPA."""
    model.set_attn_implementation(register_capture_attention())
    model.model.visual.set_attn_implementation("sdpa")
    return model


def prepare(model, processor, name: str, device: str | torch.device = "auto", dtype=None) -> LoadedModel:
    """Put an already built model on its device/dtype with capture attention (``use_capture_attention``)."""
    return placed(model, processor, name, device, dtype, use_capture_attention)


def load(source: str, device: torch.device, dtype: torch.dtype, name: str) -> LoadedModel:
    """``from_pretrained`` of model and processor from ``source`` (a folder or hub id), on ``device`` in ``dtype``."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    model = model_class(config).from_pretrained(source, dtype=dtype, attn_implementation="eager")
    use_capture_attention(model)
    processor = processor_class(config).from_pretrained(source)
    return LoadedModel(model=model.to(device).eval(), processor=processor, name=name, device=device, dtype=dtype)


def weightless(config, source: str, name: str) -> LoadedModel:
    """The architecture of ``config`` on the ``meta`` device (no weights) with the processor of ``source``."""
    with torch.device("meta"):
        model = model_class(config)(config)
    processor = processor_class(config).from_pretrained(source)
    return LoadedModel(
        model=model.eval(), processor=processor, name=name, device=torch.device("cpu"), dtype=torch.float32
    )
