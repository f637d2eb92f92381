"""Qwen's images at one fixed square side, and the processor without a video half.

Qwen's image processor keeps each image's aspect ratio (``smart_resize``), so the number of image tokens
and the grid of merged blocks vary per image. The STCG's regions are one ``G x G`` grid per run, so this
family resizes every image to ``side x side`` pixels (``side`` a multiple of ``patch_size * merge_size``,
``image_side``) and then runs the processor's patching with ``do_resize=False``: ``G = side / 28`` merged
blocks per side for the released models, ``Q = G * G`` image tokens, the same for every image. A row's
``pixel_values`` are its patches, ``(n, C * t * p * p)``, so a batch is ``(R, n, C * t * p * p)`` and rows
index like any family's; the model reads them flattened with ``image_grid_thw = [1, side/p, side/p]`` per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from stcg.images import quantise
from stcg_model.families.blip2.pixels import thread_map

DEFAULT_SIDE = 448
"""Pixels per side when a checkpoint's config does not say (``stcg_image_side``): 16 x 16 regions, 256 image
tokens for the released Qwen2/2.5-VL models (patch 14, merge 2)."""


def unit(config) -> int:
    """Pixels per side of one merged block (region): ``patch_size * spatial_merge_size`` (28 when released)."""
    vc = config.vision_config
    return int(vc.patch_size) * int(vc.spatial_merge_size)


def image_side(config) -> int:
    """The square side images are resized to: the config's ``stcg_image_side`` (tiny and trained models record
    it), else ``DEFAULT_SIDE``, rounded down to a multiple of ``unit`` (at least one block)."""
    side = int(getattr(config, "stcg_image_side", None) or DEFAULT_SIDE)
    return max(unit(config), side // unit(config) * unit(config))


class QwenPixels:
    """(h, w, 3) RGB arrays -> (N, n, C * t * p * p) float32 patches on the CPU: each image resized to
    ``side x side`` (bicubic, as Qwen's processor resamples), then the image processor's rescale, normalise and
    patching (``do_resize=False``)."""

    chunk = 8  # images per task on a thread pool

    def __init__(self, image_processor, side: int):
        self.image_processor = image_processor
        self.side = side

    def square(self, a: np.ndarray) -> Image.Image:
        img = Image.fromarray(quantise(a), "RGB")
        return img if img.size == (self.side, self.side) else img.resize((self.side, self.side), Image.BICUBIC)

    def _convert(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        out = self.image_processor(images=[self.square(a) for a in arrays], do_resize=False, return_tensors="pt")
        pv = out["pixel_values"]
        return pv.reshape(len(arrays), pv.shape[0] // len(arrays), pv.shape[1])

    def __call__(self, arrays: Sequence[np.ndarray], pool: ThreadPoolExecutor | None = None) -> torch.Tensor:
        step = self.chunk if pool is not None else max(1, len(arrays))
        parts = thread_map(pool, self._convert, [arrays[s : s + step] for s in range(0, len(arrays), step)])
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def grid_thw(pv: torch.Tensor, side: int, patch: int) -> torch.Tensor:
    """(R, 3) ``image_grid_thw`` of a batch of ``R`` square images of ``side`` pixels: ``[1, side/p, side/p]``."""
    g = side // patch
    return torch.tensor([[1, g, g]] * pv.shape[0], dtype=torch.long, device=pv.device)


class Qwen2VLImageProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` with its image processor and tokenizer only: the video processor needs torchvision,
    which images never use (``from_pretrained`` reads the two parts a checkpoint saves)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` with its image processor and tokenizer only (``Qwen2VLImageProcessor``)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
