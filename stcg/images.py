"""Reading images safely: one clear error for a missing, truncated or non-image file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcg.errors import StcgError

MAX_PIXELS = 50_000_000  # a 6000 x 6000 image (36 MP) is fine; decompression bombs are not


def open_image(path: str | Path) -> Image.Image:
    """The image at ``path`` as RGB (greyscale, CMYK, RGBA, palette converted), fully decoded."""
    p = Path(path)
    if not p.is_file():
        raise StcgError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            if im.width * im.height > MAX_PIXELS:
                raise StcgError(f"image too large ({im.width}x{im.height} pixels, limit {MAX_PIXELS}): {p}")
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(bg, rgba).convert("RGB")
            return im.convert("RGB")
    except StcgError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise StcgError(f"not a readable image ({type(e).__name__}: {str(e)[:120]}): {p}") from None


def quantise(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: a float image in [0, 1] as an 8-bit image stores it (uint8 passes through)."""
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0, 1) * 255.0).astype(np.uint8)


def to_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def to_image(arr: np.ndarray) -> Image.Image:
    """An RGB image of an (H, W, 3) float array in [0, 1] (quantised) or a uint8 array."""
    return Image.fromarray(quantise(arr), "RGB")
