"""Load a BLIP-2 checkpoint (``Blip2ForConditionalGeneration`` + ``Blip2Processor``) ready for attention
capture; the family-blind entry points (``load_model``, ``checkpoint_config``) are in
``stcg_model.families.loading``."""

from __future__ import annotations

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from stcg_model.families.capture import register_capture_attention
from stcg_model.families.loading import LoadedModel, placed


def use_capture_attention(model: Blip2ForConditionalGeneration) -> Blip2ForConditionalGeneration:
    """Attention kernels for STCG work: the Q-Former and the language model use ``CAPTURE_IMPL``
    (SDPA, except eager with weights for a module while its hook point records, see
    ``stcg_model.families.capture``); the vision tower, whose weights the STCG never reads, uses SDPA."""
    impl = register_capture_attention()
    model.set_attn_implementation(impl)  # recursive: Q-Former, language model and its stacks' config copies
    model.vision_model.set_attn_implementation("sdpa")
    return model


def prepare(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    name: str,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Put an already built model on its device/dtype with capture attention (``use_capture_attention``)."""
    return placed(model, processor, name, device, dtype, use_capture_attention)


def load(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    name: str,
    classes: tuple[type, type] = (Blip2ForConditionalGeneration, Blip2Processor),
) -> LoadedModel:
    """``from_pretrained`` of model and processor (``classes``: InstructBLIP passes its own, the layout is
    BLIP-2's) from ``source`` (a folder or hub id), on ``device`` in ``dtype``."""
    model_cls, processor_cls = classes
    model = model_cls.from_pretrained(source, dtype=dtype, attn_implementation="eager")
    use_capture_attention(model)
    processor = processor_cls.from_pretrained(source)
    return LoadedModel(model=model.to(device).eval(), processor=processor, name=name, device=device, dtype=dtype)


def weightless(
    config, source: str, name: str, classes: tuple[type, type] = (Blip2ForConditionalGeneration, Blip2Processor)
) -> LoadedModel:
    """The architecture of ``config`` on the ``meta`` device (no weights) with the processor of ``source``."""
    model_cls, processor_cls = classes
    with torch.device("meta"):
        model = model_cls(config)
    processor = processor_cls.from_pretrained(source)
    return LoadedModel(
        model=model.eval(), processor=processor, name=name, device=torch.device("cpu"), dtype=torch.float32
    )
