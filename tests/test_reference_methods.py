"""The ground-truth reference explanations ``oracle`` and ``random`` and the metrics the engine attaches
(issue 23, items 3 and 4), on the shipped demo model.

The crafted example is grey everywhere but one green patch: the demo model's answer ("green") needs that
patch and nothing else, so the patch is the evidence, and its mask the ground truth. ``oracle`` must rank
it first, and the deletion/insertion protocol must score ``oracle`` above ``random`` on it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stcg.errors import StcgError
from stcg.images import quantise
from stcg_model.engine.core import STCGEngine, VQAInput
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.loading import load_model
from stcg_model.graph import STCGraph
from stcg_model.maths.grounding import chance, mass_accuracy, pointing_game, rank_accuracy


@pytest.fixture(scope="module")
def demo():
    return load_model(None, device="cpu")


def _one_patch(lm, row: int, col: int):
    """(image, mask): a grey 64 x 64 image with one green 8 x 8 patch, and that patch's mask."""
    fill = quantise(np.asarray(lm.processor.image_processor.image_mean, dtype=np.float32))
    img = np.broadcast_to(fill, (64, 64, 3)).copy()
    img[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = (0, 200, 0)
    mask = np.zeros((64, 64), bool)
    mask[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = True
    return Image.fromarray(img), mask


def test_oracle_ranks_the_evidence_first_and_the_protocol_prefers_it_to_random(demo):
    image, mask = _one_patch(demo, 3, 4)
    cfg = EngineConfig(attributions="random,oracle,occlusion", masks=True, perturbations="gaussian_noise")
    with STCGEngine.from_config(demo, cfg) as engine:
        g = engine.explain([VQAInput("one-patch", image, "what color is the shape?", mask=mask)])[0]
    assert g.answer == "green"
    # the graph keeps its methods in the registry's order, whatever order they were asked in, and so
    # does the graph read back from its stored record
    assert g.method_names == ["attention", "occlusion", "oracle", "random"]
    assert STCGraph.from_parts(*g.to_record()[1:]).method_names == g.method_names
    region = 3 * 8 + 4
    np.testing.assert_array_equal(np.flatnonzero(g.gt), [region])
    assert g.gt[region] == 1.0
    oracle, rnd = g.method("oracle"), g.method("random")
    assert int(np.argmax(oracle.region)) == region and oracle.region[region] == pytest.approx(1.0)
    assert oracle.C is None and oracle.W is None and rnd.C is None
    # the protocol detects the difference: removing the evidence first kills the answer at once
    assert oracle.scores["deletion_auc"] < rnd.scores["deletion_auc"]
    assert oracle.scores["insertion_auc"] > rnd.scores["insertion_auc"]
    # ground-truth metrics attached to every method, equal to the functions on its region map
    for name in g.method_names:
        m = g.method(name)
        assert m.scores["mass_accuracy"] == pytest.approx(mass_accuracy(m.region, g.gt))
        assert m.scores["rank_accuracy"] == rank_accuracy(m.region, g.gt)
        assert m.scores["pointing_game"] == pointing_game(m.region, g.gt)
        assert m.scores["chance"] == chance(g.gt) == pytest.approx(1 / 64)
    assert oracle.scores["mass_accuracy"] == oracle.scores["pointing_game"] == 1.0
    assert g.method("occlusion").scores["pointing_game"] == 1.0  # occlusion finds the one patch too
    assert rnd.scores["mass_accuracy"] < 0.2


def test_random_is_seeded_by_example_and_image(demo):
    a, mask = _one_patch(demo, 3, 4)
    b, _ = _one_patch(demo, 5, 1)
    cfg = EngineConfig(attributions="random", masks=True, perturbations="gaussian_noise", deletion_steps=0)
    with STCGEngine.from_config(demo, cfg) as engine:
        runs = [
            engine.explain([VQAInput(k, im, "what color is the shape?", mask=mask)])[0]
            for k, im in (("x", a), ("x", a), ("y", a), ("x", b))
        ]
    r = [g.method("random").region for g in runs]
    np.testing.assert_array_equal(r[0], r[1])  # the same example and image: the same map, every run
    assert not np.allclose(r[0], r[2]) and not np.allclose(r[0], r[3])
    for x in r:
        assert x.min() >= 0 and x.sum() == pytest.approx(1.0)
    # under a perturbation the image changes, so the draw does (no free stability for a random map)
    assert not np.allclose(runs[0].methods["random"].region_pert[0], r[0])


def test_references_need_masks(demo):
    with pytest.raises(StcgError, match="needs ground-truth masks"):
        EngineConfig(attributions="oracle").validate()
    image, _ = _one_patch(demo, 0, 0)
    cfg = EngineConfig(attributions="oracle", masks=True, perturbations="gaussian_noise", deletion_steps=0)
    with STCGEngine.from_config(demo, cfg) as engine, pytest.raises(StcgError, match="needs a ground-truth mask"):
        engine.explain([VQAInput("no-mask", image, "what color is the shape?")])
