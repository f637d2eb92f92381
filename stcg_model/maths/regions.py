"""Image regions: the ViT patch grid mapped back onto the original image.

BLIP-2's image processor resizes to a square (no crop), so patch ``p`` (row ``p // G``, col
``p % G``) covers the same fraction of the original image: x in [c W/G, (c+1) W/G), y likewise.
Integer pixel boxes round those edges, so the boxes of all regions tile the image exactly.
A grid need not be square: Qwen-VL at its own resolution cuts an image into ``rows x cols`` merged
blocks (``grid_cols``), region ``p`` at row ``p // cols``, column ``p % cols``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def fill_rect(image: np.ndarray, y0: int, y1: int, x0: int, x1: int, value) -> np.ndarray:
    """``image[y0:y1, x0:x1] = value`` (one value per channel) in place; returns ``image``.

    Written row-wise from a tiled row: numpy's broadcast of a 3-vector over a box is ~20x slower."""
    value = np.asarray(value, dtype=image.dtype)
    if image.ndim == 3 and image.flags.c_contiguous and value.shape == (image.shape[2],) and x1 > x0:
        c = image.shape[2]
        image.reshape(image.shape[0], -1)[y0:y1, x0 * c : x1 * c] = np.tile(value, x1 - x0)
    else:
        image[y0:y1, x0:x1] = value
    return image


@dataclass(frozen=True)
class RegionGrid:
    grid: int  # regions per column (rows; G of a square grid)
    width: int  # original image width in pixels
    height: int  # original image height in pixels
    grid_cols: int = 0  # regions per row (columns); 0: square, ``grid``

    def __post_init__(self):
        if self.grid_cols == self.grid:  # one spelling per grid: a square one has grid_cols 0
            object.__setattr__(self, "grid_cols", 0)

    @classmethod
    def of(cls, graph, width: int | None = None, height: int | None = None) -> RegionGrid:
        """The grid of an ``STCGraph`` (its ``grid``, ``grid_cols``) over an image of ``width x height``
        pixels (the graph's original image by default)."""
        w, h = graph.image_size if width is None else (width, height)
        return cls(int(graph.grid), int(w), int(h), int(graph.grid_cols))

    @property
    def cols(self) -> int:
        return self.grid_cols or self.grid

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of regions."""
        return self.grid, self.cols

    @property
    def num_regions(self) -> int:
        return self.grid * self.cols

    def _edges(self, n: int, parts: int) -> np.ndarray:
        return np.round(np.arange(parts + 1) * n / parts).astype(int)

    def _xs_ys(self) -> tuple[np.ndarray, np.ndarray]:
        return self._edges(self.width, self.cols), self._edges(self.height, self.grid)

    def boxes(self) -> np.ndarray:
        """(P, 4) int boxes ``x0, y0, x1, y1`` (x1, y1 exclusive) in original pixels, row-major."""
        xs, ys = self._xs_ys()
        r, c = np.divmod(np.arange(self.num_regions), self.cols)
        return np.stack([xs[c], ys[r], xs[c + 1], ys[r + 1]], axis=1).astype(np.int64)

    def _cell_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(H,) region row of each pixel row and (W,) region column of each pixel column (boxes tile the image)."""
        xs, ys = self._xs_ys()
        return np.repeat(np.arange(self.grid), np.diff(ys)), np.repeat(np.arange(self.cols), np.diff(xs))

    def pixel_mask(self, regions) -> np.ndarray:
        """(H, W) bool mask, True on the pixels of the given region indices."""
        chosen = np.zeros(self.num_regions, dtype=bool)
        chosen[np.asarray(list(regions), dtype=int)] = True
        rows, cols = self._cell_index()
        return chosen.reshape(self.shape)[rows[:, None], cols[None, :]]

    def fill_regions(self, image: np.ndarray, regions, value) -> np.ndarray:
        """Set the pixels of the given regions of ``image`` (H, W, C) to ``value`` in place; returns it."""
        xs, ys = self._xs_ys()
        for p in np.asarray(list(regions), dtype=int).tolist():
            r, c = divmod(p, self.cols)
            fill_rect(image, ys[r], ys[r + 1], xs[c], xs[c + 1], value)
        return image

    def upsample(self, values: np.ndarray) -> np.ndarray:
        """(P,) region values -> (H, W) map on the original image (each region's box filled)."""
        values = np.asarray(values, dtype=np.float32).reshape(self.shape)
        rows, cols = self._cell_index()
        return values[rows[:, None], cols[None, :]]


def as_shape(grid) -> tuple[int, int]:
    """``(rows, cols)`` of a grid given as its side ``G`` (square) or as ``(rows, cols)``."""
    if isinstance(grid, (tuple, list)):
        return int(grid[0]), int(grid[1])
    return int(grid), int(grid)


def top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the top ``fraction`` of entries (at least one), highest first; ties by index."""
    values = np.asarray(values)
    k = max(1, int(round(fraction * values.size)))
    order = np.lexsort((np.arange(values.size), -values))
    return order[:k]


def top_k_mass(W: np.ndarray, k: int) -> np.ndarray:
    """(...,) per row of ``W`` (..., P), the mass of its ``k`` largest entries, ``k`` clamped to 1..P, in
    ``W``'s own dtype (what ``Token.top_k_mass`` holds for ``k`` links; ``stcg claims`` recomputes it)."""
    W = np.asarray(W)
    k = max(1, min(int(k), W.shape[-1]))
    return -np.sort(-W, axis=-1)[..., :k].sum(-1)


def auc(curve) -> float:
    """Trapezoid area under a curve sampled at equal steps of the removed (or kept) fraction 0..1."""
    y = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(y, np.linspace(0.0, 1.0, len(y))))
