"""Region grids that are not square (``rows x cols``: Qwen-VL at its own resolution) through the maths, the
graph, its rows for Neo4j, the pictures and the report: region ``p`` is at row ``p // cols``, column
``p % cols`` everywhere, each checked against a computation written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stcg_model.attribution.methods.occlusion import occlusion_block_side, occlusion_blocks
from stcg_model.maths.alignment import spatial_spread
from stcg_model.maths.grounding import region_shares
from stcg_model.maths.regions import RegionGrid, as_shape


@pytest.mark.parametrize("w,h,rows,cols", [(120, 90, 3, 4), (37, 23, 2, 7), (50, 200, 8, 2), (5, 3, 3, 4)])
def test_boxes_tile_the_image_row_major_and_masks_fills_upsampling_agree(w, h, rows, cols):
    grid = RegionGrid(rows, w, h, cols)
    assert grid.shape == (rows, cols) and grid.num_regions == rows * cols
    boxes = grid.boxes()
    cover = np.zeros((h, w), int)
    for x0, y0, x1, y1 in boxes:
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    for p in range(rows * cols):  # row-major: x edges from the columns, y edges from the rows
        r, c = divmod(p, cols)
        assert boxes[p].tolist() == [round(c * w / cols), round(r * h / rows), round((c + 1) * w / cols),
                                     round((r + 1) * h / rows)]  # fmt: skip
    up = grid.upsample(np.arange(rows * cols))
    for p, (x0, y0, x1, y1) in enumerate(boxes):
        assert (up[y0:y1, x0:x1] == p).all()
    regions = [0, cols - 1, rows * cols - 1]
    mask = grid.pixel_mask(regions)
    assert mask.sum() == sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes[regions])
    img = np.zeros((h, w, 3), np.uint8)
    filled = grid.fill_regions(img, regions, (9, 9, 9))
    assert ((filled == 9).all(-1) == mask).all()
    np.testing.assert_allclose(region_shares(mask, grid.shape), np.isin(np.arange(rows * cols), regions))


def test_a_square_grid_has_one_spelling_and_sides_read_either_way():
    assert RegionGrid(4, 10, 10, 4) == RegionGrid(4, 10, 10) and RegionGrid(4, 10, 10, 4).grid_cols == 0
    assert as_shape(5) == (5, 5) and as_shape((2, 7)) == (2, 7)


def test_spatial_spread_measures_distance_in_rows_and_columns():
    p = np.zeros((2, 12))
    p[0, [0, 3]] = 0.5  # two ends of the first row of a 3 x 4 grid: 1.5 columns from their centroid
    p[1, [0, 8]] = 0.5  # two ends of the first column: 1 row from their centroid
    np.testing.assert_allclose(spatial_spread(p, (3, 4)), [1.5, 1.0])
    sq = np.random.default_rng(0).random((3, 16))
    np.testing.assert_array_equal(spatial_spread(sq, 4), spatial_spread(sq, (4, 4)))


def test_occlusion_blocks_cover_a_wide_grid_once():
    assert occlusion_block_side((3, 40), max_blocks=64) == 2  # 2 x 20 blocks of 2 x 2 (40 of them)
    blocks = occlusion_blocks((3, 5), 2)
    assert len(blocks) == 2 * 3
    assert sorted(np.concatenate(blocks).tolist()) == list(range(15))
    assert blocks[0].tolist() == [0, 1, 5, 6] and blocks[-1].tolist() == [14]
    assert occlusion_block_side(16) == occlusion_block_side((16, 16)) == 2


def _rect_graph():
    from stcg_model.testing.synthetic import synthetic_graph

    g = synthetic_graph("rect", np.random.default_rng(0))
    rows, cols = 2, g.num_regions // 2  # the same P as the synthetic square grid, cut 2 x P/2
    g.grid, g.grid_cols = rows, cols
    g.boxes = RegionGrid.of(g).boxes()
    return g, rows, cols


def test_the_graph_its_neo4j_rows_and_its_file_keep_the_grid(tmp_path):
    from ingest.rows import example_payload
    from stcg_model.graph import STCGraph

    g, rows, cols = _rect_graph()
    assert g.grid_shape == (rows, cols) and g.num_regions == rows * cols
    x = example_payload(g, "r", 3)
    assert (x["example"]["grid"], x["example"]["grid_cols"]) == (rows, cols)
    for r in x["regions"]:
        assert (r["row"], r["col"]) == divmod(r["index"], cols)
        assert [r["x0"], r["y0"], r["x1"], r["y1"]] == g.boxes[r["index"]].tolist()
    nx = g.to_networkx()
    assert all(d["col"] < cols and d["row"] < rows for n, d in nx.nodes(data=True) if d.get("label") == "Region")
    back = STCGraph.load(g.save(tmp_path / "g.safetensors"))
    assert back.grid_shape == (rows, cols)


def test_pictures_and_views_follow_the_grid(tmp_path):
    from queries.report_images import mask_edges
    from stcg_model.plots import overlay, write_pictures

    g, rows, cols = _rect_graph()
    w, h = g.image_size
    img = Image.new("RGB", (w, h), (128, 128, 128))
    values = np.zeros(rows * cols)
    values[cols + 1] = 1.0  # row 1, column 1
    pic = np.asarray(overlay(img, values, RegionGrid.of(g)))
    x0, y0, x1, y1 = g.boxes[cols + 1]
    hot = pic[(y0 + y1) // 2, (x0 + x1) // 2]
    assert (hot != pic[0, 0]).any() and (pic[0, 0] == pic[0, -1]).all()
    assert len(write_pictures(g, img, tmp_path)) > 2
    gt = np.zeros(rows * cols)
    gt[cols - 1] = 1.0  # the top-right region alone: its four sides
    bx0, by0, bx1, by1 = (int(v) for v in RegionGrid.of(g, w, h).boxes()[cols - 1])
    assert sorted(mask_edges(gt, (rows, cols), w, h)) == sorted(
        [(bx0, by0, bx1 - 1, by0), (bx0, by1 - 1, bx1 - 1, by1 - 1), (bx0, by0, bx0, by1 - 1),
         (bx1 - 1, by0, bx1 - 1, by1 - 1)]
    )  # fmt: skip
