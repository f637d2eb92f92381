"""Pictures of one STCG: region heatmaps over the original image (PNG) and an interactive plotly page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stcg_model.graph import STCGraph
from stcg_model.maths.regions import RegionGrid

# a compact viridis-like ramp and a blue-white-red diverging ramp (RGB in 0..1)
_SEQ = np.array([[0.27, 0.00, 0.33], [0.23, 0.32, 0.55], [0.13, 0.57, 0.55], [0.37, 0.79, 0.38], [0.99, 0.91, 0.14]])
_DIV = np.array([[0.02, 0.19, 0.38], [0.57, 0.77, 0.87], [0.97, 0.97, 0.97], [0.96, 0.65, 0.51], [0.40, 0.00, 0.12]])


def colormap(x: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB in [0, 1] by linear interpolation along ``ramp``."""
    x = np.clip(np.nan_to_num(x), 0.0, 1.0) * (len(ramp) - 1)
    i = np.minimum(x.astype(int), len(ramp) - 2)
    f = (x - i)[..., None]
    return ramp[i] * (1 - f) + ramp[i + 1] * f


def overlay(
    image: Image.Image,
    values: np.ndarray,
    grid: RegionGrid,
    signed: bool = False,
    alpha: float = 0.55,
    boxes: np.ndarray | None = None,
) -> Image.Image:
    """``values`` (P,) drawn over ``image``; ``signed`` uses a diverging ramp centred on 0.

    ``boxes`` (k, 4) are outlined (e.g. the top-k regions).
    """
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    v = np.asarray(values, dtype=np.float64)
    if signed:
        scale = np.abs(v).max() or 1.0
        colours = colormap(0.5 + 0.5 * v / scale, _DIV)
    else:
        lo, hi = v.min(), v.max()
        colours = colormap((v - lo) / (hi - lo) if hi > lo else np.zeros_like(v), _SEQ)
    heat = colours.reshape(*grid.shape, 3)
    up = np.stack([grid.upsample(heat[..., c].reshape(-1)) for c in range(3)], -1)
    out = Image.fromarray(np.round((1 - alpha) * base * 255 + alpha * up * 255).astype(np.uint8))
    if boxes is not None:
        draw = ImageDraw.Draw(out)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle(
                [int(x0), int(y0), int(x1) - 1, int(y1) - 1], outline=(255, 40, 40), width=max(1, min(out.size) // 100)
            )
    return out


def _scaled(image: Image.Image, min_side: int = 256) -> tuple[Image.Image, float]:
    s = max(1.0, min_side / min(image.size))
    return (image.resize((round(image.width * s), round(image.height * s)), Image.NEAREST) if s > 1 else image), s


def maps(g: STCGraph) -> dict[str, tuple[np.ndarray, bool]]:
    """Named region maps of one STCG: ``{name: (values (P,), signed)}``.

    word:<i>:<word> for content words (mean of their tokens' W rows), step:<t>:<token> for answer
    steps (S rows), dW:<kind> for each perturbation (mean over tokens of the signed dW rows).
    """
    out: dict[str, tuple[np.ndarray, bool]] = {}
    for wi, (word, kind) in enumerate(zip(g.words, g.word_kinds)):
        if kind == "content":
            out[f"word:{wi}:{word}"] = (g.word_regions(wi), False)
    for t, tok in enumerate(g.answer_tokens):
        out[f"step:{t}:{tok}"] = (g.S[t], False)
    for k, kind in enumerate(g.perturbations):
        out[f"dW:{kind}"] = (g.dW[k].mean(0), True)
    return out


def methods_panel(g: STCGraph, image: Image.Image, top_k: int = 3, label_height: int = 18) -> Image.Image:
    """One PNG-ready picture: the image, then each method's region attribution over it, side by side,
    each captioned with the method's name (and, when scored, its deletion and insertion ratios)."""
    big, _ = _scaled(image.convert("RGB"), min_side=192)
    grid = RegionGrid.of(g, big.width, big.height)
    tiles = [("image", big)]
    for name in g.method_names:
        m = g.method(name)
        top = grid.boxes()[np.argsort(-np.asarray(m.region), kind="stable")[:top_k]]
        sc = m.scores
        cap = name
        if "deletion_ratio" in sc:
            cap += f"  del {sc['deletion_ratio']:.2f} ins {sc['insertion_ratio']:.2f}"
        tiles.append((cap, overlay(big, m.region, grid, boxes=top)))
    w, h = big.size
    pad = 6
    out = Image.new("RGB", (len(tiles) * (w + pad) - pad, h + label_height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, (cap, tile) in enumerate(tiles):
        x = i * (w + pad)
        out.paste(tile, (x, label_height))
        draw.text((x + 2, 2), cap, fill=(20, 20, 20))
    return out


def write_pictures(g: STCGraph, image: Image.Image, out_dir: str | Path, top_k: int = 3) -> list[Path]:
    """PNG per map plus ``<example>.html`` (interactive plotly, self-contained) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    big, scale = _scaled(image.convert("RGB"))
    grid = RegionGrid.of(g, big.width, big.height)
    written = []
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in g.example_id)
    for name, (values, signed) in maps(g).items():
        top = grid.boxes()[np.argsort(-np.abs(values), kind="stable")[:top_k]]
        pic = overlay(big, values, grid, signed=signed, boxes=top)
        clean = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        fname = out_dir / f"{safe}__{clean}.png"
        pic.save(fname)
        written.append(fname)
    if g.methods:
        fname = out_dir / f"{safe}__methods.png"
        methods_panel(g, image, top_k=top_k).save(fname)
        written.append(fname)
    written.append(write_html(g, image, out_dir / f"{safe}.html"))
    return written


def figure(g: STCGraph, image: Image.Image):
    """A plotly figure: one heatmap panel per map, a dropdown to switch, the image underneath."""
    import plotly.graph_objects as go

    m = maps(g)
    names = list(m)
    fig = go.Figure()
    fig.add_trace(go.Image(z=np.asarray(image.convert("RGB")), name="image"))
    W, H = g.image_size
    xs = (np.arange(g.cols) + 0.5) * W / g.cols
    ys = (np.arange(g.grid) + 0.5) * H / g.grid
    for j, name in enumerate(names):
        values, signed = m[name]
        fig.add_trace(
            go.Heatmap(
                z=values.reshape(g.grid_shape),
                x=xs,
                y=ys,
                opacity=0.55,
                visible=j == 0,
                name=name,
                colorscale="RdBu_r" if signed else "Viridis",
                zmid=0 if signed else None,
                hovertemplate="row %{y:.0f}px, col %{x:.0f}px<br>value %{z:.4f}<extra>" + name + "</extra>",
            )
        )
    buttons = [
        dict(
            label=name,
            method="update",
            args=[
                {"visible": [True] + [k == j for k in range(len(names))]},
                {"title": f"{g.question} -> {g.answer} | {name}"},
            ],
        )
        for j, name in enumerate(names)
    ]
    fig.update_layout(
        title=f"{g.question} -> {g.answer} | {names[0] if names else ''}",
        updatemenus=[dict(buttons=buttons, x=1.02, y=1, xanchor="left")],
        width=900,
        height=650,
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def write_html(g: STCGraph, image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    figure(g, image).write_html(str(path), include_plotlyjs=True, full_html=True)
    return path
