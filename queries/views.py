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

Maps are (rows, cols) arrays over the region grid (G x G for most families; row-major, row 0 at the top
of the image);
attention weights are probabilities (rows of W / S sum to 1 over regions), dW is signed (W - W^pi).

Every map and figure takes ``method="attention"``: a run ingested with ``--attributions`` holds
each example's explanation under other methods too (``view.method_names``; docs/attribution.md),
with the same shapes, so the same figures show them. A method without a token map (``occlusion``
has no ``W``) gives a one-line ``StcgError`` for word maps; its region and step maps work.

    view.method_names                                   # ['attention', 'rollout', 'relevancy', ...]
    token_figure(view, "color", method="relevancy").show()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from queries.library import QueryLibrary
from stcg.errors import StcgError
from stcg_model.graph import MethodResult, STCGraph


@dataclass
class ExampleView:
    """One example: its run's uid, its ``STCGraph`` (every dense array) and its image (original size)."""

    run_id: str
    graph: STCGraph
    image: Image.Image

    @property
    def words(self) -> list[str]:
        return self.graph.words

    @property
    def method_names(self) -> list[str]:
        """The attribution methods this example holds: ``attention`` first, then those of ``--attributions``."""
        return self.graph.method_names

    def method(self, name: str = "attention") -> MethodResult:
        """The explanation under method ``name`` (``region``, ``C``, ``W``, ``S``, ``W_pert``, ``scores``);
        one-line ``StcgError`` naming the methods held when this example has no such method."""
        if name not in self.graph.method_names:
            raise StcgError(
                f"this example has no explanation by method {name!r}; it holds {', '.join(self.method_names)}"
                + ("" if len(self.method_names) > 1 else " (ingest with --attributions to add others)")
            )
        return self.graph.method(name)

    def token_map(self, name: str = "attention") -> np.ndarray:
        """``W`` (n, P) under method ``name``; one-line ``StcgError`` for a method without one (occlusion)."""
        W = self.method(name).W
        if W is None:
            raise StcgError(
                f"method {name!r} has no token->region map (W): it explains regions and answer steps only; "
                f"pick one of {', '.join(m for m in self.method_names if self.graph.method(m).W is not None)}"
            )
        return W

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
    view: ExampleView,
    word: str | int | None = None,
    step: int | None = None,
    perturbation: str | None = None,
    method: str = "attention",
) -> np.ndarray:
    """(G, G) map under ``method``: a word's regions (W), a step's regions (S), or, with
    ``perturbation``, the word's dW (or, without a word, dW averaged over tokens); with none of
    them, the region attribution. Under a method other than ``attention``, dW is ``W - W_pert``
    of that method (the clean answer teacher-forced on the perturbed image)."""
    g = view.graph
    m = view.method(method)
    if perturbation is not None:
        k = g.perturbation_index(perturbation)
        dW = g.dW[k] if method == "attention" else view.token_map(method) - m.W_pert[k]
        if word is not None:
            rows = [i for i, w in enumerate(g.token_word) if w == view.word_index(word)]
            values = dW[rows].mean(0)
        else:
            values = dW.mean(0)
    elif step is not None:
        if m.S is None:
            raise StcgError(f"method {method!r} has no answer-step map (S)")
        values = m.S[step]
    elif word is not None:
        rows = [i for i, w in enumerate(g.token_word) if w == view.word_index(word)]
        values = view.token_map(method)[rows].mean(0)
    else:
        values = m.region
    return np.asarray(values, dtype=np.float64).reshape(g.grid_shape)


def perturbed_image(view: ExampleView, perturbation: str) -> Image.Image:
    """The perturbed image, re-made from the stored parameters (deterministic)."""
    from stcg.images import to_array, to_image
    from stcg_model.maths.regions import RegionGrid
    from stcg_model.perturbations import PerturbationContext, PerturbationSpec, apply_perturbation

    g = view.graph
    k = g.perturbation_index(perturbation)
    spec = PerturbationSpec(perturbation, dict(g.perturbation_params[k]))
    img = view.image
    fill = tuple(g.params.get("fill", (0.48145466, 0.4578275, 0.40821073)))
    ctx = PerturbationContext(fill=fill, grid=RegionGrid.of(g, img.width, img.height), attribution=g.attribution)
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


def _tag(method: str) -> str:
    return "" if method == "attention" else f" [{method}]"


def token_figure(view: ExampleView, word: str | int, top_k: int = 3, method: str = "attention"):
    """Plotly figure: the word's mean map over regions (W rows of its tokens) under ``method`` on the image."""
    wi = view.word_index(word)
    values = region_map(view, word=wi, method=method)
    return heatmap_figure(view.image, values, f"'{view.graph.words[wi]}' -> regions{_tag(method)}", top_k=top_k)


def step_figure(view: ExampleView, step: int, top_k: int = 3, method: str = "attention"):
    """Plotly figure: answer step ``step``'s map over regions (row of S) under ``method`` on the image."""
    tok = view.graph.answer_tokens[step]
    values = region_map(view, step=step, method=method)
    return heatmap_figure(view.image, values, f"answer step {step} '{tok}' -> regions{_tag(method)}", top_k=top_k)


def region_figure(view: ExampleView, top_k: int = 3, method: str = "attention"):
    """Plotly figure: the region attribution of the answer under ``method`` (every method has one)."""
    values = region_map(view, method=method)
    return heatmap_figure(view.image, values, f"region attribution of {view.graph.answer!r}{_tag(method)}", top_k=top_k)


def perturbation_figure(
    view: ExampleView, perturbation: str, word: str | int | None = None, top_k: int = 3, method: str = "attention"
):
    """The perturbed image with the dW map under ``method`` (of a word, or averaged over tokens) over it."""
    g = view.graph
    k = g.perturbation_index(perturbation)
    title = f"{perturbation}: answer {g.perturbed_answers[k]!r}, dp {g.dp[k]:+.3f}{_tag(method)}"
    return heatmap_figure(
        perturbed_image(view, perturbation),
        region_map(view, word=word, perturbation=perturbation, method=method),
        title,
        signed=True,
        top_k=top_k,
    )


def methods_table(view: ExampleView) -> pd.DataFrame:
    """One row per method the example holds: which maps it defines and its faithfulness scores on
    this example (deletion/insertion ratios, comprehensiveness, sufficiency; NaN where not scored,
    e.g. a run ingested without ``--attributions``)."""
    cols = ["deletion_ratio", "insertion_ratio", "comprehensiveness", "sufficiency"]
    rows = []
    for name in view.method_names:
        m = view.method(name)
        rows.append(
            {
                "method": name,
                "maps": ", ".join(k for k in ("C", "W", "S") if getattr(m, k) is not None) + ", region",
                **{c: float(m.scores.get(c, np.nan)) for c in cols},
            }
        )
    return pd.DataFrame(rows, columns=["method", "maps", *cols])


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
