"""Qwen's images: at their own resolution (each image its own grid), or at one fixed square side.

Qwen's image processor keeps each image's aspect ratio (``smart_resize``: both sides rounded to a multiple
of ``patch_size * merge_size`` = 28 px, the pixel count bounded by the processor's ``size``), so the number
of image tokens and the grid of merged 2 x 2 blocks vary per image: ``rows x cols`` regions, ``Q = rows *
cols`` image tokens, token ``k`` at block row ``k // cols``, column ``k % cols``. That is the default.
A checkpoint whose config sets ``stcg_image_side`` (the tiny and trained models, the benchmarks) has every
image resized to ``side x side`` pixels first and patched with ``do_resize=False``: one ``G x G`` grid.

A row's ``pixel_values`` are its patches ``(n, C * t * p * p)``; a batch is ``(R, n_max, C * t * p * p)``,
rows of fewer patches zero-padded at the end, so rows index like any family's. The model reads each row's
first ``t * h * w`` patches with its ``image_grid_thw = [t, h, w]`` (``grid_thw``), which the passes take
from the rows' prompt ids (``passes.GridPromptIds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from stcg.errors import StcgError
from stcg.images import quantise
from stcg_model.families.blip2.pixels import thread_map

MAX_ASPECT = 200
"""The longest side over the shortest that Qwen's ``smart_resize`` accepts."""


def unit(config) -> int:
    """Pixels per side of one merged block (region): ``patch_size * spatial_merge_size`` (28 when released)."""
    vc = config.vision_config
    return int(vc.patch_size) * int(vc.spatial_merge_size)


def fixed_side(config) -> int | None:
    """The square side every image is resized to when the config sets ``stcg_image_side``, rounded down to a
    multiple of ``unit`` (at least one block); None: each image at its own resolution."""
    side = getattr(config, "stcg_image_side", None)
    if not side:
        return None
    return max(unit(config), int(side) // unit(config) * unit(config))


def pixel_bounds(image_processor) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of a Qwen image processor (its ``size``'s shortest and longest edge)."""
    size = image_processor.size
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    lo = get("shortest_edge") or get("min_pixels") or getattr(image_processor, "min_pixels", None)
    hi = get("longest_edge") or get("max_pixels") or getattr(image_processor, "max_pixels", None)
    if not lo or not hi:
        raise ValueError(f"the Qwen image processor's size has no pixel bounds: {size!r}")
    return int(lo), int(hi)


def pad_rows(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-row patches ``(n_r, D)`` -> ``(R, max n_r, D)``, zero-padded at the end of each row."""
    n = max(p.shape[0] for p in parts)
    out = parts[0].new_zeros((len(parts), n, parts[0].shape[1]))
    for r, p in enumerate(parts):
        out[r, : p.shape[0]] = p
    return out


class QwenPixels:
    """(h, w, 3) RGB arrays -> (N, n_max, C * t * p * p) float32 patches on the CPU (module docstring):
    Qwen's processor at its own resolution (``side`` None), or each image resized to ``side x side``
    (bicubic, as Qwen's processor resamples) and patched with ``do_resize=False``."""

    chunk = 8  # images per task on a thread pool

    def __init__(self, image_processor, side: int | None, unit: int):
        self.image_processor = image_processor
        self.side = side
        self.unit = unit
        self.merge = int(image_processor.merge_size)
        self.bounds = None if side is not None else pixel_bounds(image_processor)

    def grid_shape(self, width: int, height: int) -> tuple[int, int]:
        """``(rows, cols)`` of merged blocks the model sees of a ``width x height`` image."""
        if self.side is not None:
            return self.side // self.unit, self.side // self.unit
        if max(width, height) > MAX_ASPECT * min(width, height):  # Qwen's processor refuses such images
            raise StcgError(
                f"a {width} x {height} px image is too elongated for Qwen-VL (aspect ratio at most {MAX_ASPECT}:1)"
            )
        h, w = smart_resize(height, width, factor=self.unit, min_pixels=self.bounds[0], max_pixels=self.bounds[1])
        return h // self.unit, w // self.unit

    def model_image(self, a: np.ndarray) -> Image.Image:
        """The image the processor gets: at the fixed side, resized to ``side x side``; else as it is."""
        img = Image.fromarray(quantise(a), "RGB")
        if self.side is None or img.size == (self.side, self.side):
            return img
        return img.resize((self.side, self.side), Image.BICUBIC)

    def _convert(self, arrays: Sequence[np.ndarray]) -> list[torch.Tensor]:
        if self.side is not None:
            images = [self.model_image(a) for a in arrays]
            out = self.image_processor(images=images, do_resize=False, return_tensors="pt")
        else:
            images = [Image.fromarray(quantise(a), "RGB") for a in arrays]
            out = self.image_processor(images=images, return_tensors="pt")
        sizes = out["image_grid_thw"].prod(-1).tolist()
        return list(torch.split(out["pixel_values"], sizes))

    def __call__(self, arrays: Sequence[np.ndarray], pool: ThreadPoolExecutor | None = None) -> torch.Tensor:
        step = self.chunk if pool is not None else max(1, len(arrays))
        parts = thread_map(pool, self._convert, [arrays[s : s + step] for s in range(0, len(arrays), step)])
        return pad_rows([row for part in parts for row in part])


class Qwen2VLImageProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` with its image processor and tokenizer only: the video processor needs torchvision,
    which images never use (``from_pretrained`` reads the two parts a checkpoint saves)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` with its image processor and tokenizer only (``Qwen2VLImageProcessor``)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
