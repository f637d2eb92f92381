"""The scenes testbed (``--dataset scenes``, issue 23 part 1) and the ground-truth metrics (part 3).

Generator: deterministic per (split, index); each question's answer read back from the rendered pixels;
masks equal the rendered object pixels. Metrics: hand computations on crafted maps.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from stcg import scenes as S
from stcg.datasets import open_dataset
from stcg.errors import StcgError
from stcg_model.maths.grounding import (
    chance,
    mass_accuracy,
    oracle,
    pointing_game,
    random_attribution,
    rank_accuracy,
    region_shares,
)

N = 400


@pytest.fixture(scope="module")
def sample():
    return [S.generate("test", i) for i in range(N)]


def test_generation_is_a_pure_function_of_split_and_index(sample):
    assert [S.generate("test", i) for i in range(N)] == sample
    assert S.generate("train", 0) != S.generate("test", 0)
    assert np.array_equal(np.asarray(S.render(sample[5])), np.asarray(S.render(S.generate("test", 5))))


def test_every_family_answer_and_mask_kind_occurs(sample):
    assert {s.family for s in sample} == set(S.FAMILIES)
    assert {s.mask_kind for s in sample} == {"single", "union", "all"}
    answers = {S.answer(s) for s in sample}
    assert set(S.COLOURS) | set(S.SHAPES) | {"yes", "no", "0", "1", "2", "3"} <= answers


def test_objects_do_not_overlap_and_cover_several_regions(sample):
    for s in sample:
        assert 2 <= len(s.objects) <= 5 or (s.family == "existence" and len(s.objects) >= 1)
        masks = [S.object_mask(o) for o in s.objects]
        assert sum(m.sum() for m in masks) == np.logical_or.reduce(masks).sum()  # disjoint
        for m in masks:
            assert np.count_nonzero(region_shares(m, (8, 8))) >= 4


def _shape_of(m: np.ndarray) -> str:
    """Read a shape off its pixels: the share of its bounding box it fills."""
    ys, xs = np.nonzero(m)
    fill = m.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    return "square" if fill > 0.95 else ("circle" if fill > 0.68 else "triangle")


def _colour_of(img: np.ndarray, m: np.ndarray) -> str:
    (rgb,) = {tuple(int(v) for v in px) for px in img[m]}
    return next(name for name, c in S.COLOURS.items() if c == rgb)


def test_each_answer_is_what_the_pixels_show(sample):
    """The answer recomputed from the rendered image (colours and shapes read off the pixels), not from
    the generator's own bookkeeping."""
    for s in sample:
        img = np.asarray(S.render(s))
        seen = [(_shape_of(S.object_mask(o)), _colour_of(img, S.object_mask(o)), o.cx) for o in s.objects]
        f, a = s.family, s.args
        if f == "attribute" and a[0] == "color":
            (want,) = [c for sh, c, _ in seen if sh == a[1]]
        elif f == "attribute":
            (want,) = [sh for sh, c, _ in seen if c == a[1]]
        elif f == "count":
            want = str(sum(1 for _, c, _ in seen if c == a[0]))
        elif f == "relation":
            (xa,) = [x for sh, _, x in seen if sh == a[0]]
            (xb,) = [x for sh, _, x in seen if sh == a[1]]
            want = "yes" if xa < xb else "no"
        else:
            want = "yes" if (a[1], a[0]) in {(sh, c) for sh, c, _ in seen} else "no"
        assert S.answer(s) == want, (s.question, seen)


def test_masks_are_the_rendered_pixels_of_the_evidence(sample):
    for s in sample:
        img = np.asarray(S.render(s))
        painted = np.any(img != np.array(S.BACKGROUND, np.uint8), axis=-1)
        m = S.mask(s)
        if s.mask_kind == "all":
            assert np.array_equal(m, painted)
        else:
            want = np.logical_or.reduce([S.object_mask(s.objects[i]) for i in s.targets])
            assert np.array_equal(m, want) and np.all(painted[m])
        if s.family == "attribute":  # the mask is the object the question names, and only it
            (o,) = [s.objects[i] for i in s.targets]
            assert (o.shape if s.args[0] == "color" else o.colour) == s.args[1]


def _attribute_values(s):
    key = "colour" if s.args[0] == "color" else "shape"
    return [getattr(o, key) for o in s.objects], s.targets[0]


def test_distractors_share_the_attribute_without_giving_the_answer_away():
    """Binding is needed: in attribute questions a distractor often shares the target's colour (colour
    questions) or shape (shape questions). And no shortcut: the target's value is the most frequent
    value of the image no more often than a randomly picked object's is (the values are exchangeable),
    so counting values does not answer the question."""
    att = [s for s in (S.generate("train", i) for i in range(6000)) if s.family == "attribute"]
    shared, target_top, any_top = [], [], []
    for s in att:
        values, t = _attribute_values(s)
        counts = Counter(values)
        top = max(counts.values())
        shared.append(counts[values[t]] > 1)
        target_top.append(counts[values[t]] == top)
        any_top.append(np.mean([counts[v] == top for v in values]))
    assert len(att) > 1000
    assert 0.4 < np.mean(shared) < 0.8
    assert abs(np.mean(target_top) - np.mean(any_top)) < 0.03


def test_edited_changes_only_that_object(sample):
    s = next(s for s in sample if s.family == "attribute" and s.args[0] == "color")
    (t,) = s.targets
    new = next(c for c in S.COLOURS if c != s.objects[t].colour)
    e = S.edited(s, t, colour=new)
    assert S.answer(e) == new and e.objects[:t] + e.objects[t + 1 :] == s.objects[:t] + s.objects[t + 1 :]


def test_the_dataset_reads_like_any_other():
    ex = open_dataset("scenes:30", split="train")
    assert len(ex) == 30 and ex[0].example_id == "scenes:train:0"
    assert ex[3].load_image().size == (64, 64) and ex[3].extra["mask_kind"] in {"single", "union", "all"}
    assert ex[3].answer == S.answer(S.Scene.from_dict(ex[3].extra["scene"]))
    assert len(open_dataset("scenes", limit=5)) == 5
    for bad, msg in (("scenes:0", "use scenes or scenes:N"), ("scenes:x", "use scenes or scenes:N")):
        with pytest.raises(StcgError, match=msg):
            open_dataset(bad)
    with pytest.raises(StcgError, match="scenes has splits train, test"):
        open_dataset("scenes", split="val")


# --------------------------------------------------------------------------- ground-truth metrics
def test_region_shares_hand_computed():
    m = np.zeros((8, 8), bool)
    m[0:2, 0:4] = True  # the whole top-left region of a 2 x 2 grid is 4 x 4 pixels: 8 of 16 in the mask
    assert region_shares(m, (2, 2)).tolist() == [0.5, 0.0, 0.0, 0.0]
    assert region_shares(np.ones((64, 64), bool), (8, 8)).tolist() == [1.0] * 64
    odd = np.zeros((5, 5), bool)
    odd[:, 0] = True  # 5 px over 2 columns, RegionGrid's edges round(c * 5 / 2) = 0, 2, 5: column 0 is pixels 0-1
    assert region_shares(odd, (1, 2)).tolist() == [0.5, 0.0]
    # the shares are over exactly the pixels of each region's box
    from stcg_model.maths.regions import RegionGrid

    rng = np.random.default_rng(0)
    mask = rng.random((37, 23)) < 0.3
    grid = RegionGrid(4, 23, 37)
    want = [mask[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in grid.boxes()]
    np.testing.assert_allclose(region_shares(mask, (4, 4)), want)


def test_metrics_on_crafted_maps():
    g = np.array([0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # K = 2 of P = 8
    inside = np.array([0, 3, 1, 0, 0, 0, 0, 0], float)
    outside = np.array([1, 0, 0, 2, 0, 0, 0, 0], float)
    uniform = np.ones(8)
    assert chance(g) == 0.25
    assert (mass_accuracy(inside, g), rank_accuracy(inside, g), pointing_game(inside, g)) == (1.0, 1.0, 1.0)
    assert (mass_accuracy(outside, g), rank_accuracy(outside, g), pointing_game(outside, g)) == (0.0, 0.0, 0.0)
    assert mass_accuracy(uniform, g) == chance(g)
    half = np.array([0, 1, 0, 2, 0, 0, 0, 0], float)  # top-2: regions 3 and 1, one inside
    assert (mass_accuracy(half, g), rank_accuracy(half, g), pointing_game(half, g)) == (pytest.approx(1 / 3), 0.5, 0.0)
    assert np.isnan(mass_accuracy(np.zeros(8), g)) and np.isnan(rank_accuracy(inside, np.zeros(8)))
    o = oracle(g)
    assert o.sum() == pytest.approx(1) and (mass_accuracy(o, g), rank_accuracy(o, g), pointing_game(o, g)) == (
        1.0,
        1.0,
        1.0,
    )
    r = random_attribution(64, seed=0, key="scenes:test:1")
    assert r.sum() == pytest.approx(1) and np.array_equal(r, random_attribution(64, 0, "scenes:test:1"))
    assert not np.array_equal(r, random_attribution(64, 0, "scenes:test:2"))


def test_random_sits_at_chance_on_the_testbed(sample):
    """Over many scenes the seeded random explanation's mass accuracy averages to the chance level."""
    pairs = []
    for i, s in enumerate(sample):
        g = region_shares(S.mask(s), (8, 8))
        pairs.append((mass_accuracy(random_attribution(64, 0, f"t{i}"), g), chance(g)))
    got, want = np.mean(pairs, axis=0)
    assert got == pytest.approx(want, abs=0.02)
