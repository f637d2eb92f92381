"""The study's claims as verdicts: synthetic runs built so every claim must hold, and so every claim must
fail, written with the real writer and file store into the real Neo4j; numbers against independent
pandas / scipy computations, templates against the Python point estimates, and the CLI end to end."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from ingest.rows import GraphRows, graph_rows
from ingest.runs import RUN_FINISH, RUN_MERGE
from ingest.schema import ensure_schema
from ingest.writer import Neo4jWriter
from queries.claims import CLAIM_TEMPLATES, run_claims
from queries.library import QueryLibrary, load_template, template_names
from stcg.filestore import FileStore
from stcg_model.graph import MethodResult, STCGraph
from stcg_model.maths.regions import RegionGrid
from stcg_model.maths.text import word_kind, word_spans
from stcg_model.perturbations import DEFAULT_KINDS
from stcg_model.statistics.claims import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    causal_faithfulness_claim,
    colour_claim,
    content_function_claim,
    dissociation_claim,
    jaccard_stability_claim,
    mean_estimate,
    spatial_dw_claim,
)
from stcg_model.statistics.metrics import BOOTSTRAP_BATCH, Estimate, summarise, summarise_methods
from tests.test_readme_path import stcg

GRID, P, Q, TOP_K, N = 8, 64, 4, 5, 40
KINDS = list(DEFAULT_KINDS)
N_BOOT = 300

# Run "study": built so that every finding holds (and claims 5-6 equal the study's numbers exactly).
STUDY = {
    "a": {
        "center_mask": 0.25,
        "peripheral_mask": 0.55,
        "color_shift": 0.3,
        "patch_shuffle": 0.6,
        "saliency_patch_mask": 0.2,
        "gaussian_noise": 0.4,  # 2/3 of the largest |dW|: comparable
    },
    "widths": {"content": 0.7, "function": 4.0, "punct": 4.0},  # content tokens: a compact bump
    "colour_dp": {"color_shift": 0.8},  # |dp| on colour questions (others 0.2)
    "other_dp": 0.15,
    "flip": {"color_shift/colour": 0.8, "gaussian_noise": 0.0},  # else 0.2
    "corr": -0.31,
    "overlaps": [3] * 9 + [2] * 31,  # top-6 overlap clean vs noise: Jaccard 3/9 and 2/10, mean exactly 0.23
}
# Run "contrary": every finding reversed.
CONTRARY = {
    "a": {
        "center_mask": 0.6,
        "peripheral_mask": 0.2,
        "color_shift": 0.3,
        "patch_shuffle": 0.25,
        "saliency_patch_mask": 0.3,
        "gaussian_noise": 0.1,
    },
    "widths": {"content": 4.0, "function": 0.7, "punct": 0.7},
    "colour_dp": {"color_shift": 0.1, "center_mask": 0.5, "peripheral_mask": 0.5},
    "other_dp": 0.3,
    "flip": {"gaussian_noise": 0.5},
    "corr": 0.4,
    "overlaps": [4] * 20 + [5] * 20,
}
QUESTIONS = [("what color is the shape?", "what color", "red"), ("is there a red circle?", "is there", "yes")]


def _bump(rng, width: float) -> np.ndarray:
    """A distribution over the GRID x GRID regions: a Gaussian bump of ``width`` patches at a random centre."""
    r, c = np.divmod(np.arange(P), GRID)
    cr, cc = rng.uniform(1, GRID - 2, 2)
    p = np.exp(-((r - cr) ** 2 + (c - cc) ** 2) / (2 * width**2)) + 1e-4
    return p / p.sum()


def _flat(rng, shape) -> np.ndarray:
    x = rng.uniform(0.5, 1.5, shape)
    return x / x.sum(-1, keepdims=True)


def _token_maps(rng, kinds, widths) -> np.ndarray:
    return np.stack([_bump(rng, widths[k]) for k in kinds]).astype(np.float32)


def _region_pair(rng, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean and noisy region maps whose top-6 (10% of 64) sets share exactly ``overlap`` regions."""
    perm = rng.permutation(P)
    top, rest = perm[:6], perm[6:]
    clean = rng.uniform(0.01, 0.02, P)
    clean[top] = np.linspace(0.2, 0.1, 6)
    noisy = rng.uniform(0.01, 0.02, P)
    noisy[np.r_[top[:overlap], rest[: 6 - overlap]]] = np.linspace(0.2, 0.1, 6)
    return (clean / clean.sum()).astype(np.float32), (noisy / noisy.sum()).astype(np.float32)


def _build(spec: dict, seed: int, methods: bool = False) -> list[STCGraph]:
    rng = np.random.default_rng(seed)
    K = len(KINDS)
    a = np.array([spec["a"][k] for k in KINDS])
    colour = np.arange(N) % 2 == 0
    raw = []
    for i in range(N):
        q, qtype, answer = QUESTIONS[0] if colour[i] else QUESTIONS[1]
        words = [w for w, _, _ in word_spans(q)]
        kinds = [word_kind(w) for w in words]
        W = _token_maps(rng, kinds, spec["widths"])
        U = _flat(rng, W.shape)
        share = a[:, None, None] * rng.uniform(0.9, 1.1, (K, 1, 1))
        W_pert = ((1 - share) * W[None] + share * U[None]).astype(np.float32)
        y0 = np.array(
            [
                (spec["colour_dp"].get(k, 0.2) if colour[i] else spec["other_dp"]) + rng.uniform(-0.05, 0.05)
                for k in KINDS
            ]
        )
        flips = np.array(
            [
                rng.random() < spec["flip"].get(f"{k}/colour" if colour[i] else k, spec["flip"].get(k, 0.2))
                for k in KINDS
            ]
        )
        raw.append((q, qtype, answer, words, kinds, W, W_pert, y0, flips))
    # |dp| = y0 + t (|dW|_F - mean): t solved so that the Pearson correlation over all pairs is exactly spec["corr"]
    x = np.concatenate([np.sqrt(((r[5][None] - r[6]).astype(np.float64) ** 2).sum((1, 2))) for r in raw])
    y0 = np.concatenate([r[7] for r in raw])
    t = optimize.brentq(lambda t: stats.pearsonr(x, y0 + t * (x - x.mean()))[0] - spec["corr"], -20, 20)
    y = (y0 + t * (x - x.mean())).reshape(N, K)
    assert 0 <= y.min() and y.max() <= 0.95, "the construction keeps |dp| a probability change"
    graphs = []
    for i, (q, qtype, answer, words, kinds, W, W_pert, _, flips) in enumerate(raw):
        n = len(words)
        clean, noisy = _region_pair(rng, spec["overlaps"][i])
        S = np.stack([clean, _flat(rng, P).astype(np.float32)])
        S_pert = np.stack([np.stack([_flat(rng, P), _flat(rng, P)]) for _ in KINDS]).astype(np.float32)
        S_pert[KINDS.index("gaussian_noise"), 0] = noisy
        C = _flat(rng, (Q, P)).astype(np.float32)
        C_pert = _flat(rng, (K, Q, P)).astype(np.float32)
        dW = W[None] - W_pert
        p_clean = 0.95
        dp = y[i].astype(np.float32)
        g = STCGraph(
            example_id=f"ex{i:03d}",
            question=q,
            answer=answer,
            tokens=list(words),
            words=list(words),
            token_word=list(range(n)),
            word_kinds=kinds,
            answer_tokens=[answer, "</s>"],
            answer_is_eos=[False, True],
            perturbations=list(KINDS),
            perturbation_params=[{} for _ in KINDS],
            perturbed_answers=["other" if f else answer for f in flips],
            grid=GRID,
            image_size=(64, 64),
            p_clean=p_clean,
            params={"synthetic": True},
            meta={"question_type": qtype, "answer_type": "other", "gt_answer": answer, "image_path": None},
            C=C,
            D=_flat(rng, (2, Q + n + 1)).astype(np.float32),
            W=W,
            m=rng.uniform(0.2, 0.8, n).astype(np.float32),
            S=S,
            v=rng.uniform(0.2, 0.8, 2).astype(np.float32),
            step_token=_flat(rng, (2, n)).astype(np.float32),
            drift=np.zeros(1, np.float32),
            attribution=clean,
            step_logprob=np.log([0.9, 0.95]).astype(np.float32),
            boxes=RegionGrid(GRID, 64, 64).boxes(),
            C_pert=C_pert,
            W_pert=W_pert,
            S_pert=S_pert,
            dW=dW,
            dS=S[None] - S_pert,
            dC=C[None] - C_pert,
            dW_fro=np.sqrt((dW.astype(np.float64) ** 2).sum((1, 2))).astype(np.float32),
            dW_token=np.linalg.norm(dW, axis=2).astype(np.float32),
            p_pert=(p_clean - dp).astype(np.float32),
            dp=dp,
            answer_changed=flips,
        )
        if methods:
            # rollout: the token maps reversed (function tokens compact), so claim 4 fails under it alone
            Wr = _token_maps(rng, kinds, {"content": 4.0, "function": 0.7, "punct": 0.7})
            g.methods = {
                "rollout": MethodResult(
                    region=clean,
                    C=C,
                    W=Wr,
                    S=S,
                    W_pert=((Wr[None] + _flat(rng, (K, n, P))) / 2).astype(np.float32),
                    region_pert=_flat(rng, (K, P)).astype(np.float32),
                ),
                "occlusion": MethodResult(region=clean, S=S, region_pert=_flat(rng, (K, P)).astype(np.float32)),
            }
        graphs.append(g)
    return graphs


def _write(driver, run_id: str, graphs, root) -> None:
    store = FileStore.create(root, run_id)
    refs = store.write_shard([g.to_record() for g in graphs])
    w = Neo4jWriter(driver)
    props = {"name": run_id, "model": "synthetic", "dataset": "synthetic", "store": str(store.root), "top_k": TOP_K}
    w.run_query(RUN_MERGE, run_id=run_id, props=props)
    rows = GraphRows()
    for g in graphs:
        rows.extend(graph_rows(g, run_id, TOP_K, refs[g.example_id]))
    w.write(rows)
    w.run_query(RUN_FINISH, run_id=run_id, finished=True, live=0)


@pytest.fixture(scope="module")
def runs(driver, tmp_path_factory):
    ensure_schema(driver)
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("claims-store")
    made = {
        "study": (f"test-claims-study-{tag}", _build(STUDY, 1, methods=True)),
        "contrary": (f"test-claims-contrary-{tag}", _build(CONTRARY, 2)),
    }
    try:
        for rid, graphs in made.values():
            _write(driver, rid, graphs, root)
        lib = QueryLibrary(driver)
        out = {}
        for key, (rid, graphs) in made.items():
            res = run_claims(lib, rid, n_boot=N_BOOT)
            out[key] = {"run_id": rid, "graphs": graphs, "result": res, "by": {v.claim: v for v in res.verdicts}}
        out["lib"] = lib
        yield out
    finally:
        with driver.session() as s:
            for rid, _ in made.values():
                s.run(
                    "MATCH (n {run_id: $r}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS", r=rid
                ).consume()


# --------------------------------------------------------------------------- independent computations
def _pairs(graphs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "example": g.example_id,
                "colour": "color" in g.meta["question_type"],
                "kind": k,
                "dW": float(g.dW_fro[j]),
                "abs_dp": abs(float(g.dp[j])),
                "flip": float(bool(g.answer_changed[j])),
            }
            for g in graphs
            for j, k in enumerate(g.perturbations)
        ]
    )


def _token_frame(graphs, maps=None, k: int = TOP_K) -> pd.DataFrame:
    """Per token: entropy (bits), top-k mass and spread (RMS distance in patches), written out from the definitions."""
    rr, cc = np.divmod(np.arange(P), GRID)
    rows = []
    for gi, g in enumerate(graphs):
        W = np.asarray(g.W if maps is None else maps(g), np.float64)
        for t in range(len(g.tokens)):
            p = W[t] / W[t].sum()
            mr, mc = (p * rr).sum(), (p * cc).sum()
            rows.append(
                {
                    "example": gi,
                    "kind": g.word_kinds[g.token_word[t]],
                    "entropy": float(-(p[p > 0] * np.log2(p[p > 0])).sum()),
                    "top_k_mass": float(np.sort(p)[-k:].sum()),
                    "spread": float(np.sqrt((p * ((rr - mr) ** 2 + (cc - mc) ** 2)).sum())),
                }
            )
    return pd.DataFrame(rows)


def _content_minus_function(tokens: pd.DataFrame) -> pd.DataFrame:
    m = tokens[tokens.kind.isin(["content", "function"])].groupby(["example", "kind"]).mean().unstack("kind")
    m = m.dropna()
    return pd.DataFrame({p: m[(p, "content")] - m[(p, "function")] for p in ("entropy", "top_k_mass", "spread")})


def _scipy_bca(data, statistic, paired=False, vectorized=True):
    res = stats.bootstrap(
        data,
        statistic,
        vectorized=vectorized,
        paired=paired,
        method="BCa",
        n_resamples=N_BOOT,
        batch=BOOTSTRAP_BATCH,
        rng=np.random.default_rng(0),
    )
    return res.confidence_interval.low, res.confidence_interval.high


# --------------------------------------------------------------------------- verdicts
def test_a_run_built_for_the_study_supports_every_claim(runs):
    by = runs["study"]["by"]
    assert {c: v.verdict for c, v in by.items()} == {str(c): SUPPORTED for c in range(1, 7)}, {
        c: v.reason for c, v in by.items()
    }
    assert "dissociating on this run: gaussian_noise" in by["3"].reason
    assert by["5"].measures[0].estimate.value == pytest.approx(-0.31, abs=1e-6)  # float32 arrays
    assert by["6"].measures[0].estimate.value == pytest.approx(0.23, abs=1e-12)
    assert by["2"].used["colour_question_types"] == {"what color": N // 2}
    assert by["4"].used["top_k"] == TOP_K


def test_a_run_built_against_the_study_supports_none(runs):
    by = runs["contrary"]["by"]
    assert {c: v.verdict for c, v in by.items()} == {str(c): NOT_SUPPORTED for c in range(1, 7)}, {
        c: v.reason for c, v in by.items()
    }
    assert "excludes" in by["5"].reason and "excludes" in by["6"].reason
    assert "dissociating on this run: none" in by["3"].reason


@pytest.mark.parametrize("key", ["study", "contrary"])
def test_numbers_equal_an_independent_pandas_computation(runs, key):
    run = runs[key]
    by, graphs = run["by"], run["graphs"]
    df = _pairs(graphs)
    # claim 1: mean |dW|_F per perturbation and its rank
    means = df.groupby("kind")["dW"].mean().sort_values(ascending=False)
    got = [(m.group, m.estimate.value, m.detail.split(",")[0]) for m in by["1"].measures]
    assert [g for g, _, _ in got] == list(means.index)
    for (g, v, rank), r in zip(got, range(1, 7)):
        assert v == pytest.approx(means[g], rel=1e-12) and rank == f"rank {r}"
    # claim 2: |dp| and flip rate of color_shift by question group; paired differences on colour questions
    cs = df[df.kind == "color_shift"].set_index("example")
    col, oth = cs[cs.colour], cs[~cs.colour]
    m2 = {(m.name, m.group): m.estimate for m in by["2"].measures}
    assert m2[("mean |dp|", "color_shift, colour questions")].value == pytest.approx(col.abs_dp.mean(), rel=1e-12)
    assert m2[("mean |dp|", "color_shift, other questions")].value == pytest.approx(oth.abs_dp.mean(), rel=1e-12)
    assert m2[("flip rate", "color_shift, colour questions")].value == pytest.approx(col.flip.mean(), rel=1e-12)
    diff = m2[("difference in mean |dp|", "colour minus other questions")]
    assert diff.value == pytest.approx(col.abs_dp.mean() - oth.abs_dp.mean(), rel=1e-12) and diff.n == N
    for k in KINDS:
        if k == "color_shift":
            continue
        other = df[(df.kind == k) & df.colour].set_index("example").abs_dp
        paired = m2[("paired difference in mean |dp|", f"color_shift minus {k}, colour questions")]
        assert paired.value == pytest.approx((col.abs_dp - other).mean(), rel=1e-12) and paired.n == N // 2
    # claim 3: mean |dW|_F relative to the largest, and flip rate
    flips = df.groupby("kind")["flip"].mean()
    m3 = {(m.name, m.group): m.estimate for m in by["3"].measures}
    for k in KINDS:
        assert m3[("mean |dW|_F / largest", k)].value == pytest.approx(means[k] / means.max(), rel=1e-12)
        assert m3[("flip rate", k)].value == pytest.approx(flips[k], rel=1e-12)
    # claim 4: paired per-example content minus function differences
    d = _content_minus_function(_token_frame(graphs))
    assert by["4"].used["examples_with_both_kinds"] == len(d) == N
    labels = {"entropy (bits)": "entropy", "top-k mass": "top_k_mass", "spread (patches)": "spread"}
    for m in by["4"].measures:  # the maps are float32, and so is the per-token arithmetic (as at ingestion)
        assert m.estimate.value == pytest.approx(d[labels[m.group]].mean(), rel=1e-6)
    # claims 5-6: exactly the numbers of stcg_model.statistics.metrics.summarise (what `stcg metrics` prints)
    ref = summarise(graphs, n_boot=N_BOOT)
    assert by["5"].measures[0].estimate == ref["causal_faithfulness_pearson"]
    assert by["5"].measures[1].estimate == ref["causal_faithfulness_spearman"]
    assert by["6"].measures[0].estimate == ref["jaccard_stability"]
    x, y = df.dW.to_numpy(), df.abs_dp.to_numpy()
    assert ref["causal_faithfulness_pearson"].value == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-9)


def test_intervals_are_scipy_bca_resampling_whole_examples(runs):
    by, graphs = runs["study"]["by"], runs["study"]["graphs"]
    d = _content_minus_function(_token_frame(graphs))
    ent = by["4"].measure("content minus function", "entropy (bits)").estimate
    assert (ent.low, ent.high) == pytest.approx(_scipy_bca((d.entropy.to_numpy(),), np.mean), rel=1e-6)  # float32
    df = _pairs(graphs)
    cs = df[df.kind == "color_shift"]
    x, colour = cs.abs_dp.to_numpy(), cs.colour.to_numpy()

    def group_diff(i):  # one resample of whole examples: colour mean minus other mean
        i = np.asarray(i)
        return x[i][colour[i]].mean() - x[i][~colour[i]].mean()

    est = by["2"].measure("difference in mean |dp|", "colour minus other questions").estimate
    lo, hi = _scipy_bca((np.arange(N),), group_diff, vectorized=False)
    assert (est.low, est.high) == pytest.approx((lo, hi), rel=1e-9)
    wide = df.pivot(index="example", columns="kind", values="dW")[KINDS].to_numpy()

    def ratio(i):  # gaussian_noise's mean |dW|_F over the largest mean, on one resample
        m = wide[np.asarray(i)].mean(0)
        return m[KINDS.index("gaussian_noise")] / m.max()

    est = by["3"].measure("mean |dW|_F / largest", "gaussian_noise").estimate
    lo, hi = _scipy_bca((np.arange(N),), ratio, vectorized=False)
    assert (est.low, est.high) == pytest.approx((lo, hi), rel=1e-9)
    assert est.low < est.value < est.high


def test_every_verdict_can_be_not_testable():
    kinds = ["center_mask", "color_shift"]
    dW, fl = np.array([[0.1, 0.2], [0.2, 0.3], [0.3, 0.1]]), np.zeros((3, 2))
    one = spatial_dw_claim(kinds, dW)
    assert one.verdict == NOT_TESTABLE and "no patch_shuffle, peripheral_mask" in one.reason
    assert colour_claim(kinds, dW, fl, ["is there"] * 3).verdict == NOT_TESTABLE  # no colour questions
    assert colour_claim(["center_mask"], dW[:, :1], fl[:, :1], ["what color"] * 3).verdict == NOT_TESTABLE
    three = dissociation_claim(kinds, dW, fl)
    assert three.verdict == NOT_TESTABLE and "no gaussian_noise" in three.reason
    assert content_function_claim(None, "occlusion").verdict == NOT_TESTABLE
    nan = float("nan")
    assert causal_faithfulness_claim(Estimate(0.1, nan, nan, 2)).verdict == NOT_TESTABLE
    assert causal_faithfulness_claim(None, method="occlusion").verdict == NOT_TESTABLE
    assert jaccard_stability_claim(None).verdict == NOT_TESTABLE
    # two examples: no intervals, so nothing is decided
    two = spatial_dw_claim(["patch_shuffle", "peripheral_mask", "center_mask"], np.array([[3, 2, 1.0], [3, 2, 1.5]]))
    assert two.verdict == NOT_TESTABLE and "no intervals" in two.reason


def test_a_constant_sample_has_a_zero_width_interval_and_a_varying_one_keeps_bca():
    assert mean_estimate(np.zeros(50)) == Estimate(0.0, 0.0, 0.0, 50)
    some = np.r_[np.zeros(45), np.ones(5)]
    est = mean_estimate(some, n_boot=N_BOOT)
    ref = _scipy_bca((some,), np.mean)
    assert est.value == 0.1 and (est.low, est.high) == pytest.approx(ref, rel=1e-12) and est.low < est.high
    few = mean_estimate(np.zeros(2))
    assert np.isnan(few.low)  # too few examples stays without an interval


# --------------------------------------------------------------------------- templates
def test_claim_templates_exist_and_are_listed():
    public = set(template_names())
    assert set(CLAIM_TEMPLATES.values()) <= public and "claim_top_k" not in public
    for name in CLAIM_TEMPLATES.values():
        assert load_template(name).question.startswith("Claim ")


@pytest.mark.parametrize("key", ["study", "contrary"])
def test_each_template_equals_the_python_point_estimates(runs, key):
    lib, run = runs["lib"], runs[key]
    by, rid = run["by"], run["run_id"]
    t1 = lib.run("claim_spatial_dw", run_id=rid)
    m1 = by["1"].measures
    assert list(t1.perturbation) == [m.group for m in m1] and list(t1["rank"]) == list(range(1, 7))
    assert list(t1.examples) == [m.estimate.n for m in m1]
    assert t1.mean_dW_fro.to_numpy() == pytest.approx([m.estimate.value for m in m1], rel=1e-12)
    assert set(t1[t1.spatial].perturbation) == {"patch_shuffle", "peripheral_mask"}

    t2 = lib.run("claim_colour_dp", run_id=rid).set_index(["perturbation", "questions"])
    m2 = {(m.name, m.group): m.estimate for m in by["2"].measures}
    for k in KINDS:
        assert t2.loc[(k, "colour"), "mean_abs_dp"] == pytest.approx(m2[("mean |dp|", f"{k}, colour questions")].value)
    for grp, label in (("colour", "colour questions"), ("other", "other questions")):
        row = t2.loc[("color_shift", grp)]
        assert row.colour_perturbation and row.examples == N // 2
        assert row.mean_abs_dp == pytest.approx(m2[("mean |dp|", f"color_shift, {label}")].value, rel=1e-12)
        assert row.flip_rate == pytest.approx(m2[("flip rate", f"color_shift, {label}")].value, rel=1e-12)
    assert t2.loc[("color_shift", "colour"), "question_types"] == ["what color"]
    diff = t2.loc[("color_shift", "colour"), "mean_abs_dp"] - t2.loc[("color_shift", "other"), "mean_abs_dp"]
    assert diff == pytest.approx(m2[("difference in mean |dp|", "colour minus other questions")].value, rel=1e-9)

    t3 = lib.run("claim_dissociation", run_id=rid).set_index("perturbation")
    m3 = {(m.name, m.group): m for m in by["3"].measures}
    for k in KINDS:
        assert t3.loc[k, "relative_dW"] == pytest.approx(m3[("mean |dW|_F / largest", k)].estimate.value, rel=1e-12)
        assert t3.loc[k, "flip_rate"] == pytest.approx(m3[("flip rate", k)].estimate.value, rel=1e-12)
    assert bool(t3.loc["gaussian_noise", "dissociates_at_point_estimates"]) == (key == "study")

    t4 = lib.run("claim_content_function", run_id=rid).iloc[0]
    assert t4.top_k == TOP_K and t4.examples == by["4"].used["examples_with_both_kinds"]
    m4 = {m.group: m.estimate.value for m in by["4"].measures}
    assert t4.diff_entropy_bits == pytest.approx(m4["entropy (bits)"], rel=1e-9)
    assert t4.diff_top_k_mass == pytest.approx(m4["top-k mass"], rel=1e-9)
    assert t4.diff_spread_patches == pytest.approx(m4["spread (patches)"], rel=1e-9)

    t5 = lib.run("claim_causal_faithfulness", run_id=rid).iloc[0]
    assert t5.examples == N and t5.pairs == N * len(KINDS) and t5.study == -0.31
    assert t5.pearson == pytest.approx(by["5"].measures[0].estimate.value, rel=1e-9)
    assert t5.spearman == pytest.approx(by["5"].measures[1].estimate.value, rel=1e-9)

    t6 = lib.run("claim_jaccard_stability", run_id=rid).iloc[0]
    assert t6.examples == N and t6.study == 0.23
    assert t6.jaccard_stability == pytest.approx(by["6"].measures[0].estimate.value, rel=1e-12)


def test_spearman_template_averages_tied_ranks(runs, driver):
    """Ties in |dp| (a whole perturbation at 0) share their mean rank, as scipy's spearmanr."""
    lib, rid = runs["lib"], runs["contrary"]["run_id"]
    with driver.session() as s:
        s.run(
            "MATCH (p:Perturbation {run_id: $r, kind: 'gaussian_noise'}) SET p.abs_dp_was = p.abs_dp, p.abs_dp = 0.0",
            r=rid,
        ).consume()
    try:
        got = lib.run("claim_causal_faithfulness", run_id=rid).iloc[0]
        df = _pairs(runs["contrary"]["graphs"])
        df.loc[df.kind == "gaussian_noise", "abs_dp"] = 0.0
        assert got.spearman == pytest.approx(stats.spearmanr(df.dW, df.abs_dp)[0], rel=1e-9)
        assert got.pearson == pytest.approx(stats.pearsonr(df.dW, df.abs_dp)[0], rel=1e-9)
    finally:
        with driver.session() as s:
            s.run(
                "MATCH (p:Perturbation {run_id: $r, kind: 'gaussian_noise'}) "
                "SET p.abs_dp = p.abs_dp_was REMOVE p.abs_dp_was",
                r=rid,
            ).consume()


# --------------------------------------------------------------------------- per attribution method
def test_claims_4_to_6_per_attribution_method(runs):
    res, graphs = runs["study"]["result"], runs["study"]["graphs"]
    per = {(v.method, v.claim): v for v in res.by_method}
    assert {m for m, _ in per} == {"attention", "rollout", "occlusion"}
    assert per[("attention", "4")].verdict == SUPPORTED
    assert per[("rollout", "4")].verdict == NOT_SUPPORTED  # its token maps were built reversed
    assert per[("occlusion", "4")].verdict == NOT_TESTABLE and per[("occlusion", "5")].verdict == NOT_TESTABLE
    d = _content_minus_function(_token_frame(graphs, maps=lambda g: g.method("rollout").W))
    for m in per[("rollout", "4")].measures:
        col = {"entropy (bits)": "entropy", "top-k mass": "top_k_mass", "spread (patches)": "spread"}[m.group]
        assert m.estimate.value == pytest.approx(d[col].mean(), rel=1e-6)  # float32 maps
    ref = summarise_methods(graphs, n_boot=N_BOOT)  # the numbers of `stcg metrics --by-method`
    for method in ("attention", "rollout", "occlusion"):
        assert per[(method, "6")].measures[0].estimate == ref[method]["jaccard_stability"]
    for method in ("attention", "rollout"):
        assert per[(method, "5")].measures[0].estimate == ref[method]["causal_faithfulness_pearson"]
    assert runs["contrary"]["result"].by_method == []  # attention only: no per-method block


# --------------------------------------------------------------------------- the command line
def test_cli_prints_every_verdict_in_three_formats(runs):
    rid = runs["study"]["run_id"]
    res = stcg("claims", "--run", rid, "--bootstrap", str(N_BOOT))
    assert res.returncode == 0, res.stderr[-2000:]
    for c in range(1, 7):
        assert f"claim {c}: SUPPORTED" in res.stdout
    assert "claims 4-6 per attribution method" in res.stdout
    res = stcg("claims", "--run", rid, "--bootstrap", str(N_BOOT), "--format", "json")
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(res.stdout)
    assert [c["verdict"] for c in data["claims"]] == [SUPPORTED] * 6 and data["examples"] == N
    assert data["claims"][0]["measures"][0]["estimate"]["value"] == pytest.approx(
        runs["study"]["by"]["1"].measures[0].estimate.value
    )
    res = stcg("claims", "--run", runs["contrary"]["run_id"], "--bootstrap", str(N_BOOT), "--format", "csv")
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(io.StringIO(res.stdout))
    assert set(df.verdict) == {NOT_SUPPORTED} and set(df.claim) == {1, 2, 3, 4, 5, 6}


def test_cli_claims_5_and_6_equal_stcg_metrics(runs):
    rid = runs["contrary"]["run_id"]
    m = stcg("metrics", "--run", rid, "--overall-only", "--format", "csv", "--bootstrap", "200")
    c = stcg("claims", "--run", rid, "--format", "csv", "--bootstrap", "200")
    assert m.returncode == 0 and c.returncode == 0, m.stderr[-1000:] + c.stderr[-1000:]
    metrics = pd.read_csv(io.StringIO(m.stdout)).set_index("metric")
    claims = pd.read_csv(io.StringIO(c.stdout))
    for claim, measure, metric in (
        (5, "causal faithfulness (Pearson)", "causal_faithfulness_pearson"),
        (5, "causal faithfulness (Spearman)", "causal_faithfulness_spearman"),
        (6, "Jaccard stability", "jaccard_stability"),
    ):
        row = claims[(claims.claim == claim) & (claims.measure == measure)].iloc[0]
        for col in ("value", "ci_low", "ci_high", "examples"):
            assert row[col] == metrics.loc[metric, col], (measure, col)


def test_cli_bad_input_is_one_line():
    res = stcg("claims", "--run", "no-such-run-" + uuid.uuid4().hex[:6])
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("error: no run 'no-such-run-")
    res = stcg("claims", "--bootstrap", "0")
    assert res.returncode == 2 and res.stderr.strip() == "error: --bootstrap must be >= 1"
    res = stcg("claims", "--help")
    assert res.returncode == 0 and "supported / not supported" in res.stdout
