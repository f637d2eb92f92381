"""Views of one ingested example, for scripts, the report and the exploration notebook.

Everything is read through the query library (which example, where its arrays are: the templates
``run_examples`` and ``example_store``) and the run's file store (the arrays themselves, at the root
the run recorded as ``Run.store`` unless ``store=`` says otherwise); perturbed images are re-made
from the stored parameters, which is exact because perturbations are deterministic for (seed,
example, kind).

    lib = QueryLibrary()
    examples = list_examples(lib)                      # the latest complete run's examples
    view = load_example_view(lib, None, examples.example_id[0])
    token_figure(view, word="color").show()

Maps are (G, G) arrays over the G x G region grid (row-major, row 0 at the top of the image);
attention weights are probabilities (rows of W / S sum to 1 over regions), dW is signed (W - W^pi).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from queries.library import QueryLibrary
from stcg.errors import StcgError
from stcg_model.graph import STCGraph


@dataclass
class ExampleView:
    """One example: its run's uid, its ``STCGraph`` (every dense array) and its image (original size)."""

    run_id: str
    graph: STCGraph
    image: Image.Image

    @property
    def words(self) -> list[str]:
        return self.graph.words

    def word_index(self, word: str | int) -> int:
        """Index into ``words`` of ``word`` (case-insensitive; an int is returned as is)."""
        if isinstance(word, int):
            return word
        lowered = [w.lower() for w in self.graph.words]
        if word.lower() not in lowered:
            raise StcgError(f"word {word!r} is not in the question; words: {', '.join(self.graph.words)}")
        return lowered.index(word.lower())


def list_examples(
    lib: QueryLibrary,
    run_id: str | None = None,
    question_type: str | None = None,
    perturbation: str | None = None,
    changed_only: bool = False,
    limit: int = 500,
) -> pd.DataFrame:
    """Complete examples of a run (template ``run_examples``), by example id.

    Args:
        lib: the query library.
        run_id: run uid or name; None = the latest complete run.
        question_type: only question types starting with this text.
        perturbation: only examples whose answer flips under this perturbation kind.
        changed_only: only examples whose answer flips under at least one perturbation.
        limit: at most this many rows (>= 1).
    Returns:
        DataFrame with columns ``example_id``, ``question``, ``question_type``, ``answer``,
        ``gt_answer``, ``flipped_under`` (list of perturbation kinds that change the answer).
    """
    return lib.run(
        "run_examples",
        run_id=run_id,
        question_type=question_type,
        perturbation=perturbation,
        changed_only=bool(changed_only),
        limit=limit,
    )


def load_example_view(
    lib: QueryLibrary, run_id: str | None, example_id: str, store: str | None = None, option: str = "store="
) -> ExampleView:
    """The ``ExampleView`` of one complete example: its arrays from the run's file store, its image from disk.

    Args:
        lib: the query library.
        run_id: run uid or name; None = the latest complete run.
        example_id: the example's id (``list_examples`` lists them).
        store: file store root; None = the root the run recorded (``Run.store``; ``out/store`` for runs
            ingested before it was recorded).
        option: how an error names the way to pass the store (``store=``; the notebook: ``STCG_STORE``).
    Raises:
        StcgError: (one line) no such complete example, or the store is missing / moved.
    """
    from queries.library import open_run_store
    from stcg.images import open_image

    rows = lib.run("example_store", run_id=run_id, example_id=example_id)
    if rows.empty:
        raise StcgError(
            f"no complete example {example_id!r} in run {run_id or '(latest complete)'!r}; "
            "list them with list_examples / `stcg query run run_examples`"
        )
    rec = rows.iloc[0]
    fs = open_run_store(rec["run_id"], rec["store"], store, option)
    g = STCGraph.from_parts(*fs.read(rec["shard"], rec["key"]))
    return ExampleView(rec["run_id"], g, open_image(rec["image_path"]))


def region_map(
    view: ExampleView, word: str | int | None = None, step: int | None = None, perturbation: str | None = None
) -> np.ndarray:
    """(G, G) map: a word's regions (W), a step's regions (S), or, with ``perturbation``, the word's dW
    (or, without a word, dW averaged over tokens)."""
    g = view.graph
    if perturbation is not None:
        k = g.perturbation_index(perturbation)
        if word is not None:
            rows = [i for i, w in enumerate(g.token_word) if w == view.word_index(word)]
            values = g.dW[k][rows].mean(0)
        else:
            values = g.dW[k].mean(0)
    elif step is not None:
        values = g.S[step]
    elif word is not None:
        values = g.word_regions(view.word_index(word))
    else:
        values = g.attribution
    return np.asarray(values).reshape(g.grid, g.grid)


def perturbed_image(view: ExampleView, perturbation: str) -> Image.Image:
    """The perturbed image, re-made from the stored parameters (deterministic)."""
    from stcg.images import to_array, to_image
    from stcg_model.perturbations import PerturbationContext, PerturbationSpec, apply_perturbation
    from stcg_model.regions import RegionGrid

    g = view.graph
    k = g.perturbation_index(perturbation)
    spec = PerturbationSpec(perturbation, dict(g.perturbation_params[k]))
    img = view.image
    fill = tuple(g.params.get("fill", (0.48145466, 0.4578275, 0.40821073)))
    ctx = PerturbationContext(fill=fill, grid=RegionGrid(g.grid, img.width, img.height), attribution=g.attribution)
    return to_image(apply_perturbation(spec, to_array(img), int(g.params.get("seed", 0)), g.example_id, ctx))


def heatmap_figure(image: Image.Image, values: np.ndarray, title: str, signed: bool = False, top_k: int = 3):
    """Plotly figure: the image, the (G, G) map over it, and the top-k regions outlined."""
    import plotly.graph_objects as go

    G = values.shape[0]
    W, H = image.size
    fig = go.Figure(go.Image(z=np.asarray(image.convert("RGB"))))
    fig.add_trace(
        go.Heatmap(
            z=values,
            x=(np.arange(G) + 0.5) * W / G,
            y=(np.arange(G) + 0.5) * H / G,
            opacity=0.55,
            colorscale="RdBu_r" if signed else "Viridis",
            zmid=0 if signed else None,
            name="regions",
        )
    )
    flat = np.abs(values.reshape(-1)) if signed else values.reshape(-1)
    for p in np.argsort(-flat, kind="stable")[:top_k]:
        r, c = divmod(int(p), G)
        fig.add_shape(
            type="rect",
            x0=c * W / G,
            x1=(c + 1) * W / G,
            y0=r * H / G,
            y1=(r + 1) * H / G,
            line={"color": "red", "width": 2},
        )
    fig.update_layout(title=title, width=420, height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_yaxes(autorange="reversed", visible=False)
    fig.update_xaxes(visible=False)
    return fig


def token_figure(view: ExampleView, word: str | int, top_k: int = 3):
    """Plotly figure: the word's mean attention over regions (W rows of its tokens) on the image."""
    wi = view.word_index(word)
    return heatmap_figure(view.image, region_map(view, word=wi), f"'{view.graph.words[wi]}' -> regions", top_k=top_k)


def step_figure(view: ExampleView, step: int, top_k: int = 3):
    """Plotly figure: answer step ``step``'s attention over regions (row of S) on the image."""
    tok = view.graph.answer_tokens[step]
    return heatmap_figure(
        view.image, region_map(view, step=step), f"answer step {step} '{tok}' -> regions", top_k=top_k
    )


def perturbation_figure(view: ExampleView, perturbation: str, word: str | int | None = None, top_k: int = 3):
    """The perturbed image with the dW map (of a word, or averaged over tokens) over it."""
    g = view.graph
    k = g.perturbation_index(perturbation)
    title = f"{perturbation}: answer {g.perturbed_answers[k]!r}, dp {g.dp[k]:+.3f}"
    return heatmap_figure(
        perturbed_image(view, perturbation),
        region_map(view, word=word, perturbation=perturbation),
        title,
        signed=True,
        top_k=top_k,
    )


def answers_table(view: ExampleView) -> pd.DataFrame:
    """One row per perturbation: ``perturbation``, ``answer`` (on the perturbed image), ``answer_changed``,
    ``p_perturbed`` (p of the clean answer on the perturbed image), ``dp`` (p_perturbed - p_clean),
    ``dW_fro`` (Frobenius norm of W - W^pi)."""
    g = view.graph
    return pd.DataFrame(
        {
            "perturbation": g.perturbations,
            "answer": g.perturbed_answers,
            "answer_changed": [bool(x) for x in g.answer_changed],
            "p_perturbed": g.p_pert,
            "dp": g.dp,
            "dW_fro": g.dW_fro,
        }
    )


def drift_figure(view: ExampleView):
    """Plotly figure: JS divergence (bits) between the region distributions of consecutive answer steps."""
    import plotly.graph_objects as go

    g = view.graph
    labels = [f"{t}->{t + 1}" for t in range(len(g.drift))]
    fig = go.Figure(go.Scatter(x=labels, y=g.drift, mode="lines+markers"))
    fig.update_layout(title="JS drift between consecutive answer steps (bits)", height=300, yaxis_title="bits")
    return fig
