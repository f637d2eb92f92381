"""Each perturbation does what its name says; regions tile the image; registry and parsing."""

from __future__ import annotations

import numpy as np
import pytest

from stcg.errors import StcgError
from stcg_model.maths.regions import RegionGrid, top_fraction
from stcg_model.perturbations import (
    REGISTRY,
    PerturbationContext,
    PerturbationSpec,
    apply_perturbation,
    centre_box,
    parse_perturbations,
    quantise,
    register_perturbation,
    rgb_to_hsv,
    to_float,
)

FILL = (0.48, 0.46, 0.41)


def _image(h=60, w=80, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (h, w, 3)).astype(np.float32)


def _ctx(img, attribution=None, grid=4):
    return PerturbationContext(FILL, RegionGrid(grid, img.shape[1], img.shape[0]), attribution)


def _run(kind, img, ctx=None, seed=0, key="ex", **kw):
    return apply_perturbation(PerturbationSpec.make(kind, **kw), img, seed, key, ctx or _ctx(img))


def test_center_mask_greys_exactly_the_central_square():
    img = _image()
    out = _run("center_mask", img)
    y0, y1, x0, x1 = centre_box(60, 80, 0.5)
    assert (y1 - y0, x1 - x0) == (30, 30)
    np.testing.assert_allclose(out[y0:y1, x0:x1], np.broadcast_to(FILL, (30, 30, 3)), atol=1e-6)
    outside = np.ones((60, 80), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], img[outside])


def test_peripheral_mask_is_the_complement():
    img = _image()
    out = _run("peripheral_mask", img)
    y0, y1, x0, x1 = centre_box(60, 80, 0.5)
    np.testing.assert_array_equal(out[y0:y1, x0:x1], img[y0:y1, x0:x1])
    assert np.allclose(out[:y0], FILL) and np.allclose(out[:, :x0], FILL) and np.allclose(out[y1:], FILL)


def test_color_shift_moves_hue_by_half_and_keeps_saturation_and_value():
    img = _image()
    out = _run("color_shift", img)
    a, b = rgb_to_hsv(img.astype(np.float64)), rgb_to_hsv(out.astype(np.float64))
    coloured = a[..., 1] > 0.1
    dh = (b[..., 0] - a[..., 0]) % 1.0
    np.testing.assert_allclose(dh[coloured], 0.5, atol=1e-4)
    np.testing.assert_allclose(b[..., 1], a[..., 1], atol=1e-5)
    np.testing.assert_allclose(b[..., 2], a[..., 2], atol=1e-6)  # HSV value (brightness) unchanged


def test_color_shift_closed_form_equals_the_hsv_round_trip():
    """hue_shift 0.5 uses max + min - c; it must equal rotating the hue in HSV and converting back."""
    from stcg_model.perturbations import hsv_to_rgb

    img = _image(40, 50)
    hsv = rgb_to_hsv(img.astype(np.float64))
    hsv[..., 0] = (hsv[..., 0] + 0.5) % 1.0
    np.testing.assert_allclose(_run("color_shift", img), hsv_to_rgb(hsv), atol=1e-6)
    other = _run("color_shift", img, hue_shift=0.25)  # any other shift takes the HSV path
    assert other.shape == img.shape and not np.allclose(other, _run("color_shift", img))


def test_patch_shuffle_is_a_permutation_of_the_tiles_and_seeded():
    img = _image(61, 83)  # not divisible by 4: the border beyond whole tiles stays
    out = _run("patch_shuffle", img, seed=3)
    th, tw = 61 // 4, 83 // 4
    tiles = lambda x: [x[r * th : (r + 1) * th, c * tw : (c + 1) * tw].tobytes() for r in range(4) for c in range(4)]  # noqa: E731
    assert sorted(tiles(out)) == sorted(tiles(img)) and tiles(out) != tiles(img)
    np.testing.assert_array_equal(out[4 * th :], img[4 * th :])
    np.testing.assert_array_equal(out[:, 4 * tw :], img[:, 4 * tw :])
    np.testing.assert_array_equal(out, _run("patch_shuffle", img, seed=3))
    assert not np.array_equal(out, _run("patch_shuffle", img, seed=4))


def test_saliency_mask_greys_the_top_regions_boxes():
    img = _image()
    attr = np.arange(16, dtype=float)[::-1].copy()  # region 0 most salient, then 1
    attr[[0, 1]] = [20.0, 19.0]
    out = _run("saliency_patch_mask", img, _ctx(img, attr), fraction=2 / 16)
    grid = RegionGrid(4, 80, 60)
    mask = grid.pixel_mask([0, 1])
    assert mask.sum() == 20 * 15 * 2
    assert np.allclose(out[mask], FILL) and np.array_equal(out[~mask], img[~mask])
    with pytest.raises(ValueError):
        _run("saliency_patch_mask", img)


def test_gaussian_noise_has_the_requested_spread():
    img = np.full((200, 200, 3), 0.5, np.float32)
    out = _run("gaussian_noise", img, sigma=0.1)
    assert abs(float((out - img).std()) - 0.1) < 0.005 and abs(float((out - img).mean())) < 0.005
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, _run("gaussian_noise", img, sigma=0.1))
    assert not np.array_equal(out, _run("gaussian_noise", img, key="other"))


@pytest.mark.parametrize("w,h,g", [(80, 60, 4), (37, 23, 16), (224, 224, 16), (5, 3, 4)])
def test_region_boxes_tile_the_image(w, h, g):
    grid = RegionGrid(g, w, h)
    cover = np.zeros((h, w), int)
    for x0, y0, x1, y1 in grid.boxes():
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    up = grid.upsample(np.arange(g * g))
    assert up.shape == (h, w) and up[0, 0] == 0 and up[-1, -1] == g * g - 1


def test_region_box_maps_through_processor_resize():
    """A bright block in the original lands in the patches whose boxes hold it after the processor's resize."""
    from PIL import Image

    from stcg_model.training.tokenizer import build_word_tokenizer, make_processor

    proc = make_processor(build_word_tokenizer(["a"]), 32, 4)
    img = np.zeros((60, 100, 3), np.uint8)
    grid = RegionGrid(4, 100, 60)
    x0, y0, x1, y1 = grid.boxes()[6]  # row 1, col 2
    img[y0:y1, x0:x1] = 255
    pv = proc.image_processor(images=Image.fromarray(img), return_tensors="pt")["pixel_values"][0].mean(0).numpy()
    patch_means = pv.reshape(4, 8, 4, 8).mean(axis=(1, 3)).reshape(-1)
    assert int(np.argmax(patch_means)) == 6


def test_top_fraction_and_parse_and_registry():
    assert list(top_fraction(np.array([0.1, 0.5, 0.2, 0.5]), 0.5)) == [1, 3]
    specs = parse_perturbations("center_mask:fraction=0.25,gaussian_noise:sigma=0.2")
    assert [(s.kind, s.params) for s in specs] == [
        ("center_mask", {"fraction": 0.25}),
        ("gaussian_noise", {"sigma": 0.2}),
    ]
    assert [s.kind for s in parse_perturbations("all")] == list(REGISTRY)[:6]
    with pytest.raises(StcgError, match="unknown perturbation 'blurr'"):
        parse_perturbations("blurr")
    with pytest.raises(StcgError, match="no parameter"):
        parse_perturbations("center_mask:sigma=1")

    @register_perturbation("invert_test", defaults={})
    def invert(image, params, rng, ctx):
        """Invert the image."""
        return 1.0 - image

    try:
        img = _image()
        np.testing.assert_allclose(_run("invert_test", img), 1 - img, atol=1e-6)
        # a float-only perturbation on an 8-bit image: run on the float image, result quantised
        u8 = quantise(img)
        np.testing.assert_array_equal(_run("invert_test", u8), quantise(1 - to_float(u8)))
    finally:
        REGISTRY.pop("invert_test")


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("center_mask", {}),
        ("peripheral_mask", {"fraction": 0.3}),
        ("color_shift", {}),
        ("color_shift", {"hue_shift": 0.25}),
        ("patch_shuffle", {}),
        ("saliency_patch_mask", {}),
        ("gaussian_noise", {}),
        ("gaussian_noise", {"sigma": 0.3}),
    ],
)
def test_uint8_path_equals_the_float_path_quantised(kind, kw):
    """The engine perturbs 8-bit images; each built-in gives exactly what its float result gives once saved as 8 bits."""
    u8 = np.random.default_rng(5).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    u8[:10, :10] = 128  # grey pixels (no hue) too
    fl = to_float(u8)
    attribution = np.random.default_rng(6).random(16)
    out_u8 = _run(kind, u8, ctx=_ctx(u8, attribution), **kw)
    out_fl = _run(kind, fl, ctx=_ctx(fl, attribution), **kw)
    assert out_u8.dtype == np.uint8 and out_fl.dtype == np.float32
    np.testing.assert_array_equal(out_u8, quantise(out_fl))
    assert REGISTRY[kind].uint8


def test_a_uint8_perturbation_must_return_uint8():
    @register_perturbation("bad_u8_test", defaults={}, uint8=True)
    def bad(image, params, rng, ctx):
        return image.astype(np.float32)

    try:
        with pytest.raises(TypeError, match="bad_u8_test"):
            _run("bad_u8_test", np.zeros((4, 4, 3), np.uint8))
    finally:
        REGISTRY.pop("bad_u8_test")


@pytest.mark.parametrize("w,h,g", [(80, 60, 4), (37, 23, 16), (5, 3, 4)])
def test_fill_regions_greys_exactly_the_pixel_mask(w, h, g):
    grid = RegionGrid(g, w, h)
    regions = np.random.default_rng(1).permutation(g * g)[: max(1, g * g // 3)]
    img = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = img.copy()
    expected[grid.pixel_mask(regions)] = (1, 2, 3)
    np.testing.assert_array_equal(grid.fill_regions(img.copy(), regions, (1, 2, 3)), expected)


def test_every_built_in_parameter_has_a_range_and_bad_values_are_one_line():
    for kind in (
        "center_mask",
        "peripheral_mask",
        "color_shift",
        "patch_shuffle",
        "saliency_patch_mask",
        "gaussian_noise",
    ):
        p = REGISTRY[kind]
        assert set(p.ranges) == set(p.defaults), kind  # every parameter is checked
    for text, message in [
        ("center_mask:fraction=2", "perturbation center_mask: fraction=2 is out of range; allowed: 0 < fraction <= 1"),
        ("peripheral_mask:fraction=0", "fraction=0 is out of range; allowed: 0 < fraction <= 1"),
        ("saliency_patch_mask:fraction=-0.1", "fraction=-0.1 is out of range"),
        ("gaussian_noise:sigma=-0.5", "perturbation gaussian_noise: sigma=-0.5 is out of range; allowed: sigma >= 0"),
        ("patch_shuffle:tiles=0", "tiles=0 is out of range; allowed: an integer 1 <= tiles <= 256"),
        ("patch_shuffle:tiles=2.5", "tiles=2.5 is out of range; allowed: an integer 1 <= tiles <= 256"),
        ("color_shift:hue_shift=nan", "hue_shift=nan is not a number"),
        ("gaussian_noise:sigma=1e999", "sigma=inf is out of range"),
    ]:
        with pytest.raises(StcgError) as info:
            parse_perturbations(text)
        assert message in str(info.value) and "\n" not in str(info.value), text
    edge = parse_perturbations(
        "center_mask:fraction=1,patch_shuffle:tiles=1,gaussian_noise:sigma=0,color_shift:hue_shift=-1"
    )
    assert [s.params for s in edge] == [{"fraction": 1}, {"tiles": 1}, {"sigma": 0}, {"hue_shift": -1}]
