"""Reading images: upright, 8-bit RGB, one clear error for a missing, truncated or non-image file.

Also the small conversions between PIL images and (H, W, 3) arrays used across the project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stcg.errors import StcgError

MAX_PIXELS = 50_000_000  # a 6000 x 6000 image (36 MP) is fine; decompression bombs are not


def _generated_image(path: str) -> Image.Image | None:
    """The image of a generated example (``scenes:<split>:<index>``, its ``image_path``), or None."""
    kind, _, rest = path.partition(":")
    split, _, index = rest.partition(":")
    if kind != "scenes" or not index.isdigit():
        return None
    from stcg import scenes

    if split not in scenes.SPLIT_SIZES:
        return None
    return scenes.render(scenes.generate(split, int(index)))


def open_image(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB, upright, fully decoded: the one function that opens images.

    - EXIF orientation is applied (a phone photo stored sideways is returned as a viewer shows it);
    - high bit depth is scaled, not clipped: 16-bit greyscale (``I;16*``) by 255/65535, 32-bit
      integer (``I``) by its range (8- or 16-bit content), float (``F``) from [0, 1] (or its range
      when it exceeds 1); 16-bit RGB is reduced to 8 bits by Pillow on reading;
    - alpha (``RGBA``, ``LA``, ``PA``) is composited on white; palettes go through RGBA first;
    - CMYK and YCbCr are converted by Pillow's plain formulas (no ICC colour management).

    A generated example's path (``scenes:test:7``) gives its rendered image.

    Raises ``StcgError`` (one line) for a missing, truncated, oversized or non-image file.
    """
    p = Path(path)
    if not p.is_file():
        generated = _generated_image(str(path))  # the scenes testbed's images are made, not stored
        if generated is not None:
            return generated
        raise StcgError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            if im.width * im.height > MAX_PIXELS:
                raise StcgError(f"image too large ({im.width}x{im.height} pixels, limit {MAX_PIXELS}): {p}")
            im.load()
            return upright_rgb(im)
    except StcgError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise StcgError(f"not a readable image ({type(e).__name__}: {str(e)[:120]}): {p}") from None


def upright_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB, EXIF orientation applied, of an already decoded image (rules of ``open_image``)."""
    return _to_rgb8(ImageOps.exif_transpose(im))


def _to_rgb8(im: Image.Image) -> Image.Image:
    """8-bit RGB of a decoded image of any Pillow mode (see ``open_image`` for the rules)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        grey = np.asarray(im, dtype=np.float64)
        top = float(grey.max()) if grey.size else 0.0
        if im.mode.startswith("I;16"):
            scale = 65535.0
        elif im.mode == "F" and top <= 1.0:
            scale = 1.0
        else:  # 32-bit integer or float beyond [0, 1]: 8-bit content stays, wider content is scaled
            scale = 255.0 if top <= 255.0 else (65535.0 if top <= 65535.0 else top)
        grey8 = np.round(np.clip(grey / scale, 0.0, 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(np.repeat(grey8[..., None], 3, axis=2), "RGB")
    if im.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


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
