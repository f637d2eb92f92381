"""Reading images safely: one clear error for a missing, truncated or non-image file."""
from __future__ import annotations

from pathlib import Path

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
