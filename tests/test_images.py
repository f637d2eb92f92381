"""Images are read upright and in full range, by the one function that opens them."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stcg.errors import StcgError
from stcg.images import open_image, upright_rgb

ORIENTATION = 0x0112


def _marked(width: int = 40, height: int = 20) -> np.ndarray:
    """A landscape RGB image whose top-left quarter is red and the rest blue."""
    a = np.zeros((height, width, 3), np.uint8)
    a[...] = (0, 0, 255)
    a[: height // 2, : width // 2] = (255, 0, 0)
    return a


def test_exif_orientation_is_applied(tmp_path):
    # a camera stores the pixels sideways and says "rotate 90 CW to view" (orientation 6)
    upright = _marked()
    stored = np.rot90(upright, k=1)  # 90 degrees counter-clockwise: what the sensor wrote
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif, quality=100, subsampling=0)

    im = open_image(path)
    assert im.size == (40, 20)  # landscape again, as a viewer shows it
    px = np.asarray(im).astype(int)
    assert px[2, 2, 0] > 200 and px[2, 2, 2] < 60  # the red corner is back at the top left
    assert px[-3, -3, 2] > 200 and px[-3, -3, 0] < 60


def test_image_without_exif_is_unchanged(tmp_path):
    a = _marked()
    path = tmp_path / "plain.png"
    Image.fromarray(a).save(path)
    np.testing.assert_array_equal(np.asarray(open_image(path)), a)


def test_16_bit_greyscale_is_scaled_not_saturated(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")  # the case Pillow's convert("RGB") clips

    px = np.asarray(open_image(path))
    assert px.dtype == np.uint8 and px.shape == (64, 64, 3)
    expected = np.round(ramp / 65535.0 * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(px[..., 0], expected)
    assert 120 < px.mean() < 135  # a full ramp averages mid-grey, not almost white


def _png16_rgb(arr: np.ndarray, path) -> None:
    """Write a 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def test_16_bit_rgb_keeps_its_colours(tmp_path):
    a = np.zeros((8, 8, 3), np.uint16)
    a[...] = (30000, 1000, 65535)
    path = tmp_path / "rgb16.png"
    _png16_rgb(a, path)
    px = np.asarray(open_image(path)).astype(int)
    np.testing.assert_allclose(px[0, 0], np.array([30000, 1000, 65535]) / 257, atol=1)


def test_float_and_32_bit_images(tmp_path):
    f = Image.fromarray(np.full((4, 4), 0.5, np.float32), "F")
    assert np.asarray(upright_rgb(f))[0, 0].tolist() == [128, 128, 128]
    i8 = Image.fromarray(np.full((4, 4), 200, np.int32), "I")
    assert np.asarray(upright_rgb(i8))[0, 0].tolist() == [200, 200, 200]  # 8-bit content stays
    i16 = Image.fromarray(np.full((4, 4), 65535, np.int32), "I")
    assert np.asarray(upright_rgb(i16))[0, 0].tolist() == [255, 255, 255]


def test_alpha_is_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 255  # red, fully transparent on the left half
    a[:, 2:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(a, "RGBA").save(path)
    px = np.asarray(open_image(path))
    assert px[0, 0].tolist() == [255, 255, 255] and px[0, 3].tolist() == [255, 0, 0]


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(StcgError) as e:
        open_image(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_explain_sees_the_upright_image(tmp_path, tiny_checkpoint):
    """The engine (and so the heatmaps) gets the rotated-back image: its recorded size is the viewer's."""
    from stcg_model.engine.core import STCGEngine, VQAInput
    from stcg_model.families.loading import load_model

    stored = np.ascontiguousarray(np.rot90(_marked(64, 32), k=1))  # 32 wide, 64 high on disk
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif)
    engine = STCGEngine(load_model(tiny_checkpoint, device="cpu"), "center_mask", deletion_steps=0)
    g = engine.explain([VQAInput("phone", open_image(path), "what color is it?")])[0]
    assert tuple(g.image_size) == (64, 32)
