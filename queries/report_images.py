"""The pictures of ``stcg report``: example images (files, or scenes rendered again), heatmap panels with
the ground-truth mask outlined, PNG data URIs and plotly figures embedded offline."""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def png_data_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Figures:
    """Plotly figures as HTML fragments; the first one carries plotly.js (offline)."""

    def __init__(self):
        self.first = True

    def html(self, fig) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, config={"displaylogo": False})
        self.first = False
        return out


SCENES_PREFIX = "scenes:"


def example_image(g):
    """The example's image: its file, or, for the generated scenes testbed (``image_path`` =
    ``scenes:<split>:<index>``, no file), the scene rendered again (a pure function of split and index)."""
    from stcg.images import open_image

    path = (g.meta or {}).get("image_path")
    if isinstance(path, str) and path.startswith(SCENES_PREFIX):
        from stcg import scenes

        split, _, index = path[len(SCENES_PREFIX) :].rpartition(":")
        return scenes.render(scenes.generate(split, int(index)))
    return open_image(path)


MASK_OUTLINE = (0, 229, 255)
"""Colour of the ground-truth mask's outline on the method heatmaps (the top regions are outlined in red)."""


def mask_edges(gt, grid, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Line segments (x0, y0, x1, y1) of the outline of the regions with ``gt > 0`` on an image of
    ``width`` x ``height`` pixels cut into ``grid`` regions (a side ``G`` or ``(rows, cols)``; ``RegionGrid``'s
    boxes): each side of an inside region whose neighbour across it is outside (or the image's edge)."""
    from stcg_model.maths.regions import RegionGrid, as_shape

    n_rows, n_cols = as_shape(grid)
    inside = (np.asarray(gt) > 0).reshape(n_rows, n_cols)
    boxes = RegionGrid(n_rows, width, height, n_cols).boxes()
    edges = []
    for p in np.flatnonzero(inside.ravel()).tolist():
        r, c = divmod(p, n_cols)
        x0, y0, x1, y1 = (int(v) for v in boxes[p])
        x1, y1 = x1 - 1, y1 - 1  # boxes are exclusive at the right and bottom
        if r == 0 or not inside[r - 1, c]:
            edges.append((x0, y0, x1, y0))
        if r == n_rows - 1 or not inside[r + 1, c]:
            edges.append((x0, y1, x1, y1))
        if c == 0 or not inside[r, c - 1]:
            edges.append((x0, y0, x0, y1))
        if c == n_cols - 1 or not inside[r, c + 1]:
            edges.append((x1, y0, x1, y1))
    return edges


def outline_mask(panel, g, tiles: int, label_height: int = 18, pad: int = 6):
    """``panel`` (``stcg_model.plots.methods_panel``: ``tiles`` pictures of one size side by side, ``pad``
    pixels apart, below a caption strip of ``label_height``) with the outline of the example's mask
    (regions with ``gt > 0``) drawn on every picture; unchanged when the example has no mask or the panel
    is not laid out so."""
    from PIL import ImageDraw

    if g.gt is None or not (np.asarray(g.gt) > 0).any() or tiles < 1:
        return panel
    w, h = (panel.width + pad) // tiles - pad, panel.height - label_height
    if w < 1 or h < 1 or tiles * (w + pad) - pad != panel.width:
        return panel
    edges = mask_edges(g.gt, g.grid_shape, w, h)
    draw = ImageDraw.Draw(panel)
    line = max(2, min(w, h) // 96)
    for i in range(tiles):
        x = i * (w + pad)
        for x0, y0, x1, y1 in edges:
            draw.line([(x + x0, label_height + y0), (x + x1, label_height + y1)], fill=MASK_OUTLINE, width=line)
    return panel


def example_figures(graphs, n: int) -> str:
    from stcg_model.maths.regions import RegionGrid
    from stcg_model.plots import overlay

    blocks = []
    for g in graphs[:n]:
        try:
            image = example_image(g)
        except Exception:
            continue
        scale = max(1, 250 // max(1, min(image.size)))
        big = image.resize((image.width * scale, image.height * scale)) if scale > 1 else image
        grid = RegionGrid.of(g, big.width, big.height)
        tiles = [("image", big)]
        content = [i for i, k in enumerate(g.word_kinds) if k == "content"]
        if content:
            wi = content[0]
            tiles.append((f"word '{g.words[wi]}' -> regions", overlay(big, g.word_regions(wi), grid)))
        tiles.append((f"answer step 0 '{g.answer_tokens[0]}' -> regions", overlay(big, g.S[0], grid)))
        k = int(np.argmax(g.dW_fro)) if len(g.dW_fro) else None
        if k is not None:
            tiles.append(
                (
                    f"dW under {g.perturbations[k]} (answer {g.perturbed_answers[k]!r})",
                    overlay(big, g.dW[k].mean(0), grid, signed=True),
                )
            )
        cap = html.escape(f"{g.question} -> {g.answer} (p={g.p_clean:.2f})")
        figs = "".join(
            f"<figure><img alt='{html.escape(t)}' src='{png_data_uri(im)}'><figcaption>{html.escape(t)}</figcaption></figure>"
            for t, im in tiles
        )
        blocks.append(f"<h3>{cap}</h3><div class='examples'>{figs}</div>")
    return "".join(blocks) or "<p class='meta'>(no example images available)</p>"
