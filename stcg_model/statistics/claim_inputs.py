"""What a claim's verdict is made of, and the arrays the claims read from a run's graphs (pure maths).

``Measure`` and ``ClaimVerdict`` (the typed result of ``stcg_model.statistics.claims``), estimates whose
interval settles to ``[v, v]`` when the statistic never varies (``mean_estimate``,
``two_group_difference``), and ``PerturbationArrays`` / ``TokenArrays``: per (example, perturbation) and
per question token, the numbers the six claims test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from stcg_model.graph import STCGraph
from stcg_model.maths.alignment import entropy_bits, spatial_spread
from stcg_model.maths.regions import top_k_mass
from stcg_model.statistics.metrics import MIN_ITEMS, Estimate, bootstrap

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE)

TOKEN_PROPERTIES = (
    ("entropy", "entropy (bits)", -1),
    ("top_k_mass", "top-k mass", +1),
    ("spread", "spread (patches)", -1),
)
"""Claim 4: (property, label, sign of content minus function that the claim predicts)."""

STUDY_CAUSAL_FAITHFULNESS = -0.31
STUDY_JACCARD_STABILITY = 0.23

CLAIMS = {
    "1": "spatial perturbations produce the largest internal weight variation |dW|_F",
    "2": "color_shift induces strong answer-probability changes on colour questions",
    "3": "a perturbation with comparable |dW|_F leaves the answer unchanged (dissociation; the study: gaussian_noise)",
    "4": "content tokens form stronger, more localised links than function tokens",
    "5": f"causal faithfulness (corr. of |dW|_F with |dp|) is {STUDY_CAUSAL_FAITHFULNESS}",
    "6": f"Jaccard stability of the top-10% regions under gaussian_noise is {STUDY_JACCARD_STABILITY}",
}
"""Claim id -> what the study reported, in words."""


@dataclass(frozen=True)
class Measure:
    """One number behind a verdict: ``name`` (what), ``group`` (of what: a perturbation, a question
    group, a method), its ``estimate`` (value, 95% BCa interval, examples) and a ``detail``."""

    name: str
    group: str
    estimate: Estimate
    detail: str = ""


@dataclass(frozen=True)
class ClaimVerdict:
    """The verdict on one claim: ``claim`` id ("1".."6"), ``study`` (what the study reported),
    ``test`` (what is compared), ``verdict`` (``VERDICTS``), ``reason`` (one sentence with the
    deciding numbers), ``measures`` (every number behind it), ``used`` (examples, question types and
    perturbations counted), ``method`` (the attribution method the numbers come from)."""

    claim: str
    study: str
    test: str
    verdict: str
    reason: str
    measures: tuple[Measure, ...] = ()
    used: dict = field(default_factory=dict)
    method: str = "attention"

    def as_dict(self) -> dict:
        return asdict(self)

    def measure(self, name: str, group: str = "") -> Measure:
        """The measure named ``name`` (and ``group``); KeyError if there is none."""
        for m in self.measures:
            if m.name == name and m.group == group:
                return m
        raise KeyError(f"claim {self.claim} has no measure {name!r} of {group!r}")


# --------------------------------------------------------------------------- helpers
def fmt_estimate(e: Estimate) -> str:
    iv = "no interval" if np.isnan(e.low) else f"[{e.low:.3f}, {e.high:.3f}]"
    return f"{e.value:.3f} {iv}"


DEGENERACY_PROBES = 64
"""Resamples drawn to tell a statistic that never varies (zero-width interval) from one BCa cannot bound."""


def settle(est: Estimate, statistic, seed: int = 0) -> Estimate:
    """``est``, or ``[v, v]`` when its interval is NaN only because the statistic gives the same value on
    every resample (a flip rate of 0 on every example, the largest perturbation's ratio of 1):
    checked on ``DEGENERACY_PROBES`` resamples of the examples (vectorized ``statistic``)."""
    if not (np.isnan(est.low) and est.n >= MIN_ITEMS and np.isfinite(est.value)):
        return est
    idx = np.random.default_rng(seed).integers(0, est.n, size=(DEGENERACY_PROBES, est.n))
    with np.errstate(all="ignore"):
        vals = np.asarray(statistic(idx), dtype=np.float64)
    if np.all(np.isfinite(vals)) and np.allclose(vals, est.value, rtol=1e-12, atol=1e-15):
        return Estimate(est.value, est.value, est.value, est.n, est.method)
    return est


def mean_estimate(x: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean of ``x`` (one value per example) with its 95% BCa interval over examples."""
    x = np.asarray(x, dtype=np.float64)

    def stat(i):
        return x[i].mean(-1)

    return settle(bootstrap(stat, len(x), n_boot, seed, vectorized=True), stat, seed)


def two_group_difference(x: np.ndarray, in_group: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean of ``x`` over examples ``in_group`` minus mean over the others, resampling all examples together."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(in_group, dtype=bool)

    def stat(i):
        xi, gi = x[i], g[i]
        a, b = gi.sum(-1), (~gi).sum(-1)
        with np.errstate(all="ignore"):
            d = np.where(gi, xi, 0.0).sum(-1) / a - np.where(gi, 0.0, xi).sum(-1) / b
        return np.where((a > 0) & (b > 0), d, np.nan)

    return settle(bootstrap(stat, len(x), n_boot, seed, vectorized=True), stat, seed)


def kind_columns(kinds: Sequence[str], matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per perturbation kind, its column without the examples that lack it (NaN)."""
    m = np.asarray(matrix, dtype=np.float64)
    return {k: m[~np.isnan(m[:, j]), j] for j, k in enumerate(kinds)}


def check_kinds(kinds: Sequence[str], *arrays: np.ndarray) -> None:
    for a in arrays:
        if np.ndim(a) != 2 or np.shape(a)[1] != len(kinds):
            raise ValueError(f"expected an (examples, {len(kinds)}) array, got shape {np.shape(a)}")


# --------------------------------------------------------------------------- the inputs, from graphs
@dataclass(frozen=True)
class PerturbationArrays:
    """Per (example, perturbation): ``dW_fro``, ``abs_dp``, ``flipped`` (1.0 / 0.0), NaN where an
    example lacks a perturbation; ``kinds`` in column order; ``question_types`` per example."""

    kinds: tuple[str, ...]
    dW_fro: np.ndarray
    abs_dp: np.ndarray
    flipped: np.ndarray
    question_types: tuple[str, ...]

    @classmethod
    def from_graphs(cls, graphs: Sequence[STCGraph], question_types: Sequence[str | None]) -> PerturbationArrays:
        kinds: list[str] = []
        for g in graphs:
            kinds += [k for k in g.perturbations if k not in kinds]
        shape = (len(graphs), len(kinds))
        dW, dp, fl = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for i, g in enumerate(graphs):
            for j, k in enumerate(g.perturbations):
                c = kinds.index(k)
                dW[i, c] = float(g.dW_fro[j])
                dp[i, c] = abs(float(g.dp[j]))
                fl[i, c] = 1.0 if bool(g.answer_changed[j]) else 0.0
        qts = tuple(q if q else "unknown" for q in question_types)
        return cls(tuple(kinds), dW, dp, fl, qts)


@dataclass(frozen=True)
class TokenArrays:
    """One row per question token: its ``example`` index, word ``kind`` (content / function / punct)
    and its region distribution's ``entropy`` (bits), ``top_k_mass`` and ``spread`` (patches), from
    the method's ``W`` with ``stcg_model.maths.alignment`` (as ingestion computes the Token properties)."""

    example: np.ndarray
    kind: np.ndarray
    entropy: np.ndarray
    top_k_mass: np.ndarray
    spread: np.ndarray
    n_examples: int

    @classmethod
    def from_graphs(cls, graphs: Sequence[STCGraph], top_k: int, method: str = "attention") -> TokenArrays | None:
        """None when the method defines no ``W`` (occlusion) on any graph that holds it."""
        ex, kind, ent, mass, spread = [], [], [], [], []
        held = 0
        for i, g in enumerate(graphs):
            if method != "attention" and method not in g.methods:
                continue
            W = g.W if method == "attention" else g.method(method).W
            if W is None:
                continue
            held += 1
            n = len(g.tokens)
            W = np.asarray(W[:n])
            ex += [i] * n
            kind += [g.word_kinds[g.token_word[t]] for t in range(n)]
            ent.append(entropy_bits(W))
            mass.append(top_k_mass(W, top_k))
            spread.append(spatial_spread(W, g.grid_shape))
        if not held:
            return None

        def cat(parts):
            return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

        return cls(np.asarray(ex, int), np.asarray(kind, str), cat(ent), cat(mass), cat(spread), held)

    def differences(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(examples with both content and function tokens, {property: content mean minus function mean})."""
        out: dict[str, list[float]] = {p: [] for p, _, _ in TOKEN_PROPERTIES}
        used = []
        for i in np.unique(self.example):
            rows = self.example == i
            c, f = rows & (self.kind == "content"), rows & (self.kind == "function")
            if not c.any() or not f.any():
                continue
            used.append(int(i))
            for p, _, _ in TOKEN_PROPERTIES:
                v = getattr(self, p)
                out[p].append(float(v[c].mean() - v[f].mean()))
        return np.asarray(used, int), {p: np.asarray(v, np.float64) for p, v in out.items()}
