"""Load an InstructBLIP checkpoint (``InstructBlipForConditionalGeneration`` + ``InstructBlipProcessor``) ready
for attention capture: BLIP-2's loading (``families.blip2.loading``) with InstructBLIP's classes."""

from __future__ import annotations

import torch
from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

from stcg_model.families.blip2 import loading as blip2_loading
from stcg_model.families.loading import LoadedModel

CLASSES = (InstructBlipForConditionalGeneration, InstructBlipProcessor)

prepare = blip2_loading.prepare  # capture attention, device and dtype: the module layout is BLIP-2's
use_capture_attention = blip2_loading.use_capture_attention


def load(source: str, device: torch.device, dtype: torch.dtype, name: str) -> LoadedModel:
    """``from_pretrained`` of model and processor from ``source`` (a folder or hub id), on ``device`` in ``dtype``."""
    return blip2_loading.load(source, device, dtype, name, CLASSES)


def weightless(config, source: str, name: str) -> LoadedModel:
    """The architecture of ``config`` on the ``meta`` device (no weights) with the processor of ``source``."""
    return blip2_loading.weightless(config, source, name, CLASSES)
