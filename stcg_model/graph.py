"""``STCGraph``: everything computed for one example, typed, with lossless save/load.

Array shapes (``Q`` query slots, ``P`` regions, ``n`` question tokens, ``T`` answer steps,
``K`` perturbations, ``L`` encoder positions):

===================  ===========  ===============================================================
name                 shape        meaning
===================  ===========  ===============================================================
C                    (Q, P)       Q-Former cross-attention, CLS dropped, rows renormalised
E                    (L, L)       language-model encoder self-attention
D                    (T, L)       decoder cross-attention per answer step
W                    (n, P)       question token -> region (rows sum to 1)
m                    (n,)         visual mass of each token
S                    (T, P)       answer step -> region (rows sum to 1)
v                    (T,)         visual mass of each step
step_token           (T, n)       decoder attention of step t on question token i
drift                (T-1,)       JS divergence (bits) between consecutive rows of S
attribution          (P,)         clean region attribution (mean of S over answer steps)
step_logprob         (T,)         log p of each clean answer token, clean image
C_pert, W_pert,      (K, ...)     the same under each perturbation (clean answer teacher-forced)
S_pert
dW, dS, dC           (K, ...)     clean minus perturbed
dW_fro               (K,)         Frobenius norm of dW ("internal weight variation")
dW_token             (K, n)       L2 norm of each token's row of dW
p_pert, dp           (K,)         p(y | I^pi) and p(y | I) - p(y | I^pi)
answer_changed       (K,)         normalised perturbed greedy answer != clean answer
deletion_curve       (D+1,)       p(y) as regions are removed by attribution (0%, 10%, ... 100%)
deletion_curve_random (D+1,)      the same in a seeded random order
gt                   (P,)         share of each region inside the ground-truth mask (examples with one)
===================  ===========  ===============================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

ARRAY_FIELDS = (
    "C",
    "E",
    "D",
    "W",
    "m",
    "S",
    "v",
    "step_token",
    "drift",
    "attribution",
    "step_logprob",
    "boxes",
    "C_pert",
    "W_pert",
    "S_pert",
    "dW",
    "dS",
    "dC",
    "dW_fro",
    "dW_token",
    "p_pert",
    "dp",
    "answer_changed",
    "deletion_curve",
    "deletion_curve_random",
    "gt",
)


METHOD_ARRAYS = ("region", "C", "W", "S", "W_pert", "region_pert")


@dataclass
class MethodResult:
    """One attribution method's explanation of the example (docs/spec.md sections 6-7).

    ``region`` (P,) sums to 1; ``C`` (Q, P), ``W`` (n, P), ``S`` (T, P) rows sum to 1 (None where
    the method defines none: occlusion has no ``C``/``W``); ``W_pert`` (K, n, P) and
    ``region_pert`` (K, P) the same under each perturbation (clean answer teacher-forced);
    ``scores`` the faithfulness numbers of ``stcg_model.maths.faithfulness`` (deletion/insertion AUC and
    ratios, comprehensiveness, sufficiency).
    """

    region: np.ndarray
    C: np.ndarray | None = None
    W: np.ndarray | None = None
    S: np.ndarray | None = None
    W_pert: np.ndarray | None = None
    region_pert: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def dW_fro(self) -> np.ndarray | None:
        """(K,) ``|W - W_pert[k]|_F``: the internal weight variation under the method (None without ``W``)."""
        if self.W is None or self.W_pert is None:
            return None
        d = self.W[None].astype(np.float64) - self.W_pert.astype(np.float64)
        return np.sqrt((d**2).sum(axis=(1, 2)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.asarray(getattr(self, k), dtype=np.float32) for k in METHOD_ARRAYS if getattr(self, k) is not None
        }


@dataclass(kw_only=True)
class STCGraph:
    """One example's STCG (shapes in the module docstring). Keyword-only; ``E`` and the deletion
    curves are ``None`` when not computed (``store_dense=False``, ``deletion_steps=0``)."""

    # identity and text
    example_id: str
    question: str
    answer: str
    tokens: list[str]  # question tokens (no image slots, no </s>)
    words: list[str]
    token_word: list[int]  # word index of each token
    word_kinds: list[str]  # content | function | punct, per word
    answer_tokens: list[str]  # T steps (the last may be </s>)
    answer_is_eos: list[bool]
    perturbations: list[str]  # K kinds, in array order
    perturbation_params: list[dict]
    perturbed_answers: list[str]
    grid: int  # regions per column (rows; G of a square grid)
    grid_cols: int = 0  # regions per row when the grid is not square (Qwen-VL at its own resolution); 0: square
    image_size: tuple[int, int]  # (width, height) of the original image
    p_clean: float
    params: dict  # model, layers, seed, ... everything used
    meta: dict = field(default_factory=dict)  # dataset fields: question_type, answers, image path ...
    # arrays
    C: np.ndarray
    E: np.ndarray | None = None
    D: np.ndarray
    W: np.ndarray
    m: np.ndarray
    S: np.ndarray
    v: np.ndarray
    step_token: np.ndarray
    drift: np.ndarray
    attribution: np.ndarray
    step_logprob: np.ndarray
    boxes: np.ndarray
    C_pert: np.ndarray
    W_pert: np.ndarray
    S_pert: np.ndarray
    dW: np.ndarray
    dS: np.ndarray
    dC: np.ndarray
    dW_fro: np.ndarray
    dW_token: np.ndarray
    p_pert: np.ndarray
    dp: np.ndarray
    answer_changed: np.ndarray
    deletion_curve: np.ndarray | None = None
    deletion_curve_random: np.ndarray | None = None
    gt: np.ndarray | None = None  # (P,) ground-truth mask share per region (docs/spec.md section 7), when known
    # explanations by other attribution methods (``attention`` is the arrays above), by method name
    methods: dict[str, MethodResult] = field(default_factory=dict)

    # ------------------------------------------------------------ views
    @property
    def num_regions(self) -> int:
        return self.grid * self.cols

    @property
    def cols(self) -> int:
        """Regions per row."""
        return self.grid_cols or self.grid

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the region grid (row-major region indices)."""
        return self.grid, self.cols

    def perturbation_index(self, kind: str) -> int:
        return self.perturbations.index(kind)

    def word_regions(self, word_index: int) -> np.ndarray:
        """(P,) region distribution of a word: the mean of its tokens' rows of W."""
        rows = [i for i, w in enumerate(self.token_word) if w == word_index]
        return self.W[rows].mean(0)

    def deletion_auc(self) -> tuple[float, float] | None:
        """(AUC by attribution order, AUC by random order) over the removed fraction 0..1."""
        if self.deletion_curve is None or len(self.deletion_curve) < 2:
            return None
        x = np.linspace(0.0, 1.0, len(self.deletion_curve))
        return float(np.trapezoid(self.deletion_curve, x)), float(np.trapezoid(self.deletion_curve_random, x))

    # ------------------------------------------------------------ save / load
    def _meta_dict(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name not in ARRAY_FIELDS and f.name != "methods":
                out[f.name] = getattr(self, f.name)
        if not self.grid_cols:  # a square grid's files stay as they were before grids had two sides
            del out["grid_cols"]
        out["image_size"] = list(self.image_size)
        if self.methods:
            out["method_scores"] = {name: dict(m.scores) for name, m in self.methods.items()}
        return out

    def to_record(self) -> tuple[str, dict, dict[str, np.ndarray]]:
        """``(example_id, meta, arrays)``: what ``stcg.filestore.FileStore.write_shard`` stores."""
        return self.example_id, self._meta_dict(), self.arrays()

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name; a method's as ``method/<name>/<array>``."""
        out = {
            name: np.ascontiguousarray(getattr(self, name)) for name in ARRAY_FIELDS if getattr(self, name) is not None
        }
        for mname, m in self.methods.items():
            if mname == "attention":  # its arrays are the main ones; only its scores are kept (meta)
                continue
            out.update({f"method/{mname}/{k}": np.ascontiguousarray(v) for k, v in m.arrays().items()})
        return out

    def save(self, path: str | Path) -> Path:
        """One safetensors file: the arrays as tensors, everything else as JSON in its header."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(self.arrays(), str(path), metadata={"stcgraph": json.dumps(self._meta_dict())})
        return path

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> STCGraph:
        meta = dict(meta)
        meta["image_size"] = tuple(meta["image_size"])
        scores = meta.pop("method_scores", {}) or {}
        plain = {k: v for k, v in arrays.items() if not k.startswith("method/")}
        by_method: dict[str, dict[str, np.ndarray]] = {}
        for k, v in arrays.items():
            if k.startswith("method/"):
                _, mname, field_name = k.split("/", 2)
                by_method.setdefault(mname, {})[field_name] = v
        if "attention" in scores:
            by_method["attention"] = {"region": plain["attribution"]}
        order = {m: i for i, m in enumerate(scores)}  # as built (the registry's order), kept in the meta
        methods = {
            m: MethodResult(**by_method[m], scores=dict(scores.get(m, {})))
            for m in sorted(by_method, key=lambda m: (order.get(m, len(order)), m))
        }
        return cls(**meta, **plain, methods=methods)

    def method(self, name: str) -> MethodResult:
        """The explanation under method ``name``; ``attention`` is built from the main arrays."""
        if name == "attention":
            keep = ~np.asarray(self.answer_is_eos, bool)
            region_pert = (
                (self.S_pert[:, keep] if keep.any() else self.S_pert).mean(1) if len(self.perturbations) else None
            )
            scores = dict(self.methods["attention"].scores) if "attention" in self.methods else {}
            return MethodResult(self.attribution, self.C, self.W, self.S, self.W_pert, region_pert, scores)
        if name not in self.methods:
            raise KeyError(f"no explanation by method {name!r}; this graph has {', '.join(self.method_names)}")
        return self.methods[name]

    @property
    def method_names(self) -> list[str]:
        """``attention`` and every other method this graph holds."""
        return ["attention"] + [m for m in self.methods if m != "attention"]

    @classmethod
    def load(cls, path: str | Path) -> STCGraph:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["stcgraph"])
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        return cls.from_parts(meta, arrays)

    # ------------------------------------------------------------ networkx
    def to_networkx(self, top_k: int | None = None):
        """A ``networkx.MultiDiGraph`` with the same node kinds and links as the Neo4j graph.

        ``top_k`` keeps each token's / step's strongest region links (None keeps all).
        """
        import networkx as nx

        g = nx.MultiDiGraph()
        ex = ("Example", self.example_id)
        g.add_node(ex, label="Example", question=self.question, answer=self.answer, p_clean=self.p_clean)
        k_keep = self.num_regions if top_k is None else min(top_k, self.num_regions)
        for p in range(self.num_regions):
            g.add_node(
                ("Region", p),
                label="Region",
                index=p,
                row=p // self.cols,
                col=p % self.cols,
                box=tuple(int(x) for x in self.boxes[p]),
            )
            g.add_edge(ex, ("Region", p), key="HAS_REGION")
        for i, tok in enumerate(self.tokens):
            node = ("Token", i)
            w = self.token_word[i]
            g.add_node(
                node,
                label="Token",
                index=i,
                text=tok,
                word=self.words[w],
                kind=self.word_kinds[w],
                visual_mass=float(self.m[i]),
            )
            g.add_edge(ex, node, key="HAS_TOKEN")
            order = np.argsort(-self.W[i], kind="stable")[:k_keep]
            for rank, p in enumerate(order):
                g.add_edge(node, ("Region", int(p)), key="ATTENDS", weight=float(self.W[i, p]), rank=rank + 1)
        for t, tok in enumerate(self.answer_tokens):
            node = ("Timestep", t)
            g.add_node(
                node,
                label="Timestep",
                step=t,
                token=tok,
                is_eos=self.answer_is_eos[t],
                visual_mass=float(self.v[t]),
                logprob=float(self.step_logprob[t]),
            )
            g.add_edge(ex, node, key="HAS_STEP")
            order = np.argsort(-self.S[t], kind="stable")[:k_keep]
            for rank, p in enumerate(order):
                g.add_edge(node, ("Region", int(p)), key="ATTENDS", weight=float(self.S[t, p]), rank=rank + 1)
            for i in range(len(self.tokens)):
                g.add_edge(node, ("Token", i), key="ATTENDS_TOKEN", weight=float(self.step_token[t, i]))
            if t > 0:
                g.add_edge(("Timestep", t - 1), node, key="NEXT", js=float(self.drift[t - 1]))
        for k, kind in enumerate(self.perturbations):
            node = ("Perturbation", kind)
            g.add_node(
                node,
                label="Perturbation",
                kind=kind,
                params=json.dumps(self.perturbation_params[k]),
                answer=self.perturbed_answers[k],
                answer_changed=bool(self.answer_changed[k]),
                p_perturbed=float(self.p_pert[k]),
                dp=float(self.dp[k]),
                dW_fro=float(self.dW_fro[k]),
            )
            g.add_edge(ex, node, key="UNDER")
            for i in range(len(self.tokens)):
                order = np.argsort(-np.abs(self.dW[k, i]), kind="stable")[:k_keep]
                for rank, p in enumerate(order):
                    g.add_edge(
                        ("Token", i),
                        ("Region", int(p)),
                        key=f"DW:{kind}",
                        perturbation=kind,
                        dW=float(self.dW[k, i, p]),
                        rank=rank + 1,
                    )
        return g

    def summary(self) -> dict:
        return {
            "example_id": self.example_id,
            "question": self.question,
            "answer": self.answer,
            "p_clean": self.p_clean,
            **{f"dp[{k}]": float(self.dp[i]) for i, k in enumerate(self.perturbations)},
        }


def graphs_equal(a: STCGraph, b: STCGraph) -> bool:
    """Exact equality of metadata and every array (used by round-trip tests and the file store)."""
    if a._meta_dict() != b._meta_dict():
        return False
    aa, bb = a.arrays(), b.arrays()
    return aa.keys() == bb.keys() and all(aa[k].dtype == bb[k].dtype and np.array_equal(aa[k], bb[k]) for k in aa)


__all__ = ["STCGraph", "MethodResult", "graphs_equal", "ARRAY_FIELDS", "METHOD_ARRAYS"]
