"""Ground-truth masks from users' data (docs/masks.md): COCO instances for VQA-v2, mask columns of hf: datasets.

Real files in the official formats (COCO instances JSON with polygons and a crowd RLE, VQA-v2 JSON and COCO
file names, a ``datasets`` save_to_disk folder); expected masks are rasterised by hand."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from stcg.datasets import load_hf_vqa, open_dataset
from stcg.errors import StcgError
from stcg.masks import attach_masks, named_categories
from tests.vqa_fixtures import (
    COCO_CATEGORIES,
    make_coco_vqa_folder,
    make_hf_mask_copy,
    rect_polygon,
    uncompressed_rle,
    write_coco_instances,
)

W, H = 64, 48
CAT = {c["name"]: c["id"] for c in COCO_CATEGORIES}


def rect(x0, y0, x1, y1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def poly(image_id, name, box):
    return {"image_id": image_id, "category_id": CAT[name], "segmentation": [rect_polygon(*box)]}


CROWD = rect(30, 25, 60, 41)  # a crowd of people, given as COCO's uncompressed RLE
BOXES = {
    (101, "dog"): (10, 8, 30, 24),
    (101, "person"): (40, 5, 50, 40),
    (102, "person"): (2, 2, 12, 20),
    (102, "car"): (20, 30, 28, 44),
    (103, "hot dog"): (5, 5, 20, 15),
    (103, "dog"): (30, 20, 50, 40),
    (103, "teddy bear"): (50, 2, 60, 12),
    (103, "bear"): (0, 30, 10, 45),
    (104, "person"): (5, 5, 15, 30),
    (104, "motorcycle"): (10, 25, 40, 45),
    (104, "tv"): (45, 2, 60, 14),
    (105, "dog"): (1, 1, 10, 10),
    (106, "dog"): (16, 12, 32, 24),  # the red block the fixture paints on every image (raw frame)
}
QUESTIONS = [
    (101, "Is the dog on the couch?"),  # 0: dog (no couch in the image) -> single
    (101, "is there a cat?"),  # 1: no such category -> no mask
    (101, "what is in the picture?"),  # 2: names nothing -> no mask
    (102, "how many people are there?"),  # 3: person polygon + crowd RLE -> union
    (102, "are the cars red?"),  # 4: plural -> single
    (103, "what is on the hot dog?"),  # 5: the hot dog, not the dog
    (103, "is the teddy bear brown?"),  # 6: the teddy bear, not the bear
    (103, "is the Dog next to the hot-dog?"),  # 7: both -> union
    (104, "is the man on the motorbike?"),  # 8: synonyms: person + motorcycle -> union
    (104, "is the television on?"),  # 9: synonym -> tv, single
    (105, "is the dog big?"),  # 10: the image file is 32 x 32, the annotations say 64 x 48
    (106, "where is the dog?"),  # 11: the file is stored sideways (EXIF orientation 6)
    (107, "is the dog here?"),  # 12: an image the instances file does not list
]
SIZES = {i: (W, H) for i in range(101, 107)}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    folder = make_coco_vqa_folder(
        tmp / "vqa", QUESTIONS, {**SIZES, 107: (W, H)}, file_sizes={105: (32, 32)}, exif_orientation={106: 6}
    )
    anns = [poly(i, name, box) for (i, name), box in BOXES.items()]
    anns.append({"image_id": 102, "category_id": CAT["person"], "segmentation": uncompressed_rle(CROWD), "iscrowd": 1})
    instances = write_coco_instances(tmp / "annotations" / "instances_val2014.json", SIZES, anns)
    logs: list[str] = []
    examples = open_dataset(f"vqa-v2:{folder}", masks=f"coco:{instances}", log=logs.append)
    return folder, instances, examples, logs


def test_coco_masks_equal_hand_rasterised_polygons(coco):
    _, _, ex, _ = coco
    assert [e.question for e in ex] == [q for _, q in QUESTIONS]  # order and selection kept
    m = ex[0].load_mask()
    assert m.dtype == bool and m.shape == (H, W)
    assert np.array_equal(m, rect(*BOXES[101, "dog"]))
    assert ex[0].extra["mask_kind"] == "single" and ex[0].meta()["mask_kind"] == "single"
    assert ex[0].extra["mask_categories"] == ["dog"]


def test_coco_union_of_polygon_and_crowd_rle(coco):
    e = coco[2][3]
    assert np.array_equal(e.load_mask(), rect(*BOXES[102, "person"]) | CROWD)
    assert e.extra["mask_kind"] == "union"


def test_coco_plurals_synonyms_and_phrases(coco):
    ex = coco[2]
    assert np.array_equal(ex[4].load_mask(), rect(*BOXES[102, "car"])) and ex[4].extra["mask_kind"] == "single"
    assert np.array_equal(ex[5].load_mask(), rect(*BOXES[103, "hot dog"]))
    assert np.array_equal(ex[6].load_mask(), rect(*BOXES[103, "teddy bear"]))
    assert np.array_equal(ex[7].load_mask(), rect(*BOXES[103, "dog"]) | rect(*BOXES[103, "hot dog"]))
    assert ex[7].extra["mask_kind"] == "union"
    assert np.array_equal(ex[8].load_mask(), rect(*BOXES[104, "person"]) | rect(*BOXES[104, "motorcycle"]))
    assert ex[8].extra["mask_kind"] == "union" and ex[8].extra["mask_categories"] == ["motorcycle", "person"]
    assert np.array_equal(ex[9].load_mask(), rect(*BOXES[104, "tv"])) and ex[9].extra["mask_kind"] == "single"


def test_coco_questions_naming_nothing_present_get_no_mask(coco):
    _, _, ex, logs = coco
    for k in (1, 2, 12):
        assert not ex[k].has_mask and ex[k].load_mask() is None and "mask_kind" not in ex[k].meta()
    assert sum(e.has_mask for e in ex) == 10
    assert len(logs) == 1 and logs[0].startswith("masks: 10 of 13 examples have a mask from instances_val2014.json")
    assert "2 name no COCO category" in logs[0] and "1 have an image not in the file" in logs[0]


def test_coco_mask_of_wrong_size_image_is_a_one_line_error_when_loaded(coco):
    e = coco[2][10]
    assert e.has_mask  # opening did not read the image: masks are lazy
    with pytest.raises(StcgError, match="64 x 48 px in the annotations but .* is 32 x 32") as err:
        e.load_mask()
    assert "\n" not in str(err.value)


def test_coco_mask_follows_exif_orientation_like_the_image(coco):
    e = coco[2][11]
    img = e.load_image()
    assert img.size == (H, W)  # upright: the raw 64 x 48 file turned by its EXIF tag
    m = e.load_mask()
    assert m.shape == (img.height, img.width)
    rgb = np.asarray(img).astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 100)
    assert (red & m).sum() / (red | m).sum() > 0.9  # the annotated object is where the image shows it


def test_coco_masks_survive_pickling(coco):
    e = coco[2][3]
    assert np.array_equal(pickle.loads(pickle.dumps(e)).load_mask(), e.load_mask())


def test_named_categories_word_boundaries():
    names = [c["name"] for c in COCO_CATEGORIES]
    assert named_categories("is this a cartoon?", names) == []  # not "car"
    assert named_categories("how many dogs and people?", names) == ["dog", "person"]
    assert named_categories("is the hotdog or the teddy-bear bigger?", names) == ["hot dog", "teddy bear"]
    assert named_categories("are the traffic lights green?", names) == ["traffic light"]
    assert named_categories("Is the WOMAN on the sofa watching TV?", names) == ["person", "couch", "tv"]
    assert named_categories("the boys' bear", names) == ["person", "bear"]


@pytest.mark.parametrize("spec", ["voc:x.json", "coco:", "coco", "instances.json", ""])
def test_bad_mask_spec_is_a_one_line_error(coco, spec):
    folder = coco[0]
    with pytest.raises(StcgError, match=r"--masks must be coco:<path") as err:
        open_dataset(f"vqa-v2:{folder}", masks=spec)
    assert "\n" not in str(err.value)


def test_missing_or_invalid_instances_file_is_a_one_line_error(coco, tmp_path):
    folder = coco[0]
    bad = {
        "missing.json": None,
        "text.json": "this is not json {",
        "list.json": json.dumps([1, 2]),
        "nocats.json": json.dumps({"images": [], "annotations": []}),
        "badann.json": json.dumps(
            {
                "images": [{"id": 101, "height": H, "width": W}],
                "categories": COCO_CATEGORIES,
                "annotations": [{"image_id": 101, "category_id": 999, "segmentation": []}],
            }
        ),  # fmt: skip
    }
    for name, content in bad.items():
        p = tmp_path / name
        if content is not None:
            p.write_text(content)
        with pytest.raises(StcgError) as err:
            open_dataset(f"vqa-v2:{folder}", masks=f"coco:{p}")
        msg = str(err.value)
        assert "\n" not in msg and str(p) in msg, msg
        assert ("not found" in msg) == (content is None)


def test_coco_masks_refuse_datasets_without_coco_images(coco):
    with pytest.raises(StcgError, match="not to scenes examples"):
        open_dataset("scenes:4", masks=f"coco:{coco[1]}")


# --------------------------------------------------------------------------- hf: mask columns
def test_hf_image_mask_column(tmp_path):
    sizes = [(W, H), (W, H), (W, H), (W, H)]
    lum = np.zeros((H, W), np.uint8)
    lum[5:20, 10:40] = 200
    binary = rect(0, 0, 8, 8)
    colour = np.zeros((H, W, 3), np.uint8)
    colour[30:40, 20:30, 2] = 255  # only the blue channel: still inside
    masks = [
        Image.fromarray(lum, "L"),
        Image.fromarray(binary).convert("1"),
        Image.fromarray(colour, "RGB"),
        None,
    ]
    root = make_hf_mask_copy(tmp_path / "hf", masks, sizes, mask_kinds=["single", "all", "union", None])
    ex = open_dataset(f"hf:{root}")
    assert [e.has_mask for e in ex] == [True, True, True, False]
    assert np.array_equal(ex[0].load_mask(), lum > 0)
    assert np.array_equal(ex[1].load_mask(), binary)
    assert np.array_equal(ex[2].load_mask(), colour.any(axis=2))
    assert ex[3].load_mask() is None
    assert [e.meta().get("mask_kind") for e in ex] == ["single", "all", "union", None]
    assert all(e.load_mask().shape == (e.load_image().height, e.load_image().width) for e in ex[:3])


def test_hf_array_mask_column_and_wrong_shape(tmp_path):
    good = rect(3, 4, 20, 30).astype(np.uint8)
    wrong = np.ones((W, H), np.uint8)  # transposed: (64, 48) for a 64 x 48 image
    root = make_hf_mask_copy(tmp_path / "hf", [good, wrong], [(W, H), (W, H)], column="gt_mask", as_image=False)
    ex = load_hf_vqa(str(root))
    assert [e.extra["mask_kind"] for e in ex] == ["union", "union"]  # no mask_kind column
    assert np.array_equal(ex[0].load_mask(), good.astype(bool))
    with pytest.raises(StcgError, match=r"is 48 x 64 px but its image is 64 x 48") as err:
        ex[1].load_mask()
    assert "\n" not in str(err.value)


def test_hf_bad_mask_kind_is_a_one_line_error(tmp_path):
    root = make_hf_mask_copy(tmp_path / "hf", [rect(0, 0, 4, 4)], [(W, H)], as_image=False, mask_kinds=["several"])
    with pytest.raises(StcgError, match="mask_kind is 'several', not one of single, union, all") as err:
        load_hf_vqa(str(root))
    assert "\n" not in str(err.value)


def test_coco_masks_keep_an_examples_own_mask(tmp_path, coco):
    own = rect(0, 0, 5, 5)
    root = make_hf_mask_copy(tmp_path / "hf", [own, None], [(W, H), (W, H)], as_image=False)
    ex = load_hf_vqa(str(root))
    logs: list[str] = []
    out = attach_masks(ex, f"coco:{coco[1]}", log=logs.append)
    assert np.array_equal(out[0].load_mask(), own) and not out[1].has_mask  # image 601 is not in the file
    assert "0 of 2 examples" in logs[0] and "1 keep their own mask" in logs[0]


def test_ingest_help_mentions_masks():
    from stcg_cli.ingest_commands import ingest

    res = CliRunner().invoke(ingest, ["--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "--masks coco:PATH" in text and "oracle/random" in text and "plausibility" in text
