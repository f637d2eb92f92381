"""The STCG engine: batched model passes with attention capture -> one ``STCGraph`` per example.

``STCGEngine`` orchestrates; each job lives in its own module (docs/stcg.md, "Code map"):
``inputs`` (prompt tokenising, question positions), ``pixels`` (images -> ``pixel_values``),
the model family's passes (``families/<family>/``: one interface, ``ModelPasses``), ``curves``
(deletion curves), ``assembly`` (section 2 quantities and the ``STCGraph``, pure functions).

Per batch of examples:

1. every image variant (clean + each perturbation that needs no attribution) goes through the
   model ONCE (``ModelPasses.run_pass``): ``C``, ``E``, ``D``, the greedy answers, and ``p(y | variant)``
   of each example's clean greedy answer, teacher-forced;
2. attribution-dependent perturbations (``saliency_patch_mask``) then run one more such pass on
   their images;
3. optional deletion curves need only teacher-forced probabilities (``ModelPasses.answer_logprobs``);
4. ``assembly.assemble_graph`` makes each example's ``STCGraph``.

Host work (tokenising, perturbing, pixel tensors: ``prepare_batch``) is split from the model work so
that on a GPU the next batch is prepared while the model runs the current one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from stcg_model.engine.assembly import PerturbedRow, assemble_graph, clean_attribution, derive
from stcg_model.engine.curves import deletion_curves
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.families.blip2.pixels import FastBlipPixels, PixelPreprocessor, thread_map
from stcg_model.families.capture import LayerSelection
from stcg_model.families.inputs import (
    HostBatch,
    InputPreparer,
    PreparedExample,
    Row,
    VQAInput,
    answer_token_strings,
    check_prompt,
    decode_answer,
    question_token_strings,
)
from stcg_model.families.loading import LoadedModel
from stcg_model.families.passes import ModelPasses, PassResult
from stcg_model.families.registry import family_for
from stcg_model.graph import STCGraph
from stcg_model.perturbations import PerturbationContext, PerturbationSpec, apply_perturbation

RESULTS_VERSION = 3
"""Bumped whenever the same inputs and parameters give different numbers (3: log p in float64; 2: perturbations on 8-bit
images, Gaussian noise from a torch generator). Part of an ingestion run's identity, so a run is
never resumed with results of another version mixed in."""

__all__ = [
    "RESULTS_VERSION",
    "STCGEngine",
    "VQAInput",
    "HostBatch",
    "PreparedExample",
    "PassResult",
    "FastBlipPixels",
    "check_prompt",
    "prefetched",
]


def prefetched(pool: ThreadPoolExecutor | None, fn: Callable, items: Sequence):
    """``fn(item)`` for each item in order; with a pool, item i + 1 is computed while item i is used."""
    if pool is None:
        for x in items:
            yield fn(x)
        return
    nxt = pool.submit(fn, items[0]) if items else None
    for i in range(len(items)):
        cur = nxt.result()
        nxt = pool.submit(fn, items[i + 1]) if i + 1 < len(items) else None
        yield cur


class STCGEngine:
    """Builds STCGs for batches of examples with one loaded model of any registered family.

    Make it with ``STCGEngine.from_config(lm, EngineConfig(...))`` (or the keyword constructor, which
    builds the same ``EngineConfig``); either validates every setting against the model first. It
    holds a thread pool on GPU runs: ``close()`` it, or use it as a context manager."""

    def __init__(
        self,
        lm: LoadedModel,
        perturbations: Sequence[PerturbationSpec] | str | None = None,
        layers: str | LayerSelection = "mean",
        seed: int = 0,
        max_new_tokens: int = 10,
        deletion_steps: int = 10,
        store_dense: bool = True,
        prompt: str | None = None,
        host_workers: int | None = None,
    ):
        """``prompt`` wraps the question, e.g. ``"Question: {question} Answer:"``; default: the bare
        question for T5 models and ``"Question: {question} Answer:"`` (BLIP-2's VQA prompt) for OPT.
        ``host_workers`` threads make perturbed images and pixel tensors (default: up to 8 CPU cores
        when the model is on a GPU, none on CPU; 0 or 1 = in the calling thread); results do not depend on it."""
        if not isinstance(perturbations, str):
            perturbations = "all" if perturbations is None else tuple(perturbations)
        config = EngineConfig(
            model=lm.name,
            device=str(lm.device),
            dtype=str(lm.dtype).replace("torch.", ""),
            perturbations=perturbations,
            layers=layers.describe() if isinstance(layers, LayerSelection) else str(layers),
            prompt=prompt,
            seed=seed,
            max_new_tokens=max_new_tokens,
            deletion_steps=deletion_steps,
        )
        self._setup(lm, config, store_dense, host_workers)

    @classmethod
    def from_config(
        cls, lm: LoadedModel, config: EngineConfig, store_dense: bool = True, host_workers: int | None = None
    ) -> STCGEngine:
        """An engine for ``lm`` with the settings of ``config`` (validated against ``lm`` first; its
        model/device/dtype fields are what ``lm`` was loaded with and are not re-read here)."""
        engine = cls.__new__(cls)
        engine._setup(lm, config, store_dense, host_workers)
        return engine

    def _setup(self, lm: LoadedModel, config: EngineConfig, store_dense: bool, host_workers: int | None) -> None:
        self._pool = None
        config.validate(lm)
        self.config = config
        self.lm = lm
        self.model = lm.model
        self.processor = lm.processor
        self.tokenizer = lm.processor.tokenizer
        self.perturbations = config.perturbation_specs()
        self.layers = config.layer_selection()
        self.seed = config.seed
        self.deletion_steps = config.deletion_steps
        self.attributions = config.attribution_names()  # attention first; others add maps and scores
        self.store_dense = store_dense
        family = family_for(lm)
        make_pixels = getattr(
            family, "pixel_preprocessor", None
        )  # optional: a family whose pixel values are not (3, H, W)
        self.pixels = make_pixels(lm) if make_pixels else PixelPreprocessor(self.processor.image_processor)
        self.passes: ModelPasses = family.passes_for(lm, self.layers, config.max_new_tokens, self._pixel_values)
        p = self.passes
        self.prompt = check_prompt(config.prompt if config.prompt is not None else p.default_prompt)
        self.Q, self.image_token_id = p.Q, p.image_token_id
        self.eos_id, self.pad_id, self.start_id = p.eos_id, p.pad_id, p.start_id
        self.grid_side = family.grid_side(self.model.config)  # None: each image has its own grid (grid_shape)
        self.fill = tuple(float(x) for x in self.processor.image_processor.image_mean)
        if host_workers is None:  # on a CPU-only run the model already uses every core: threads would only contend
            host_workers = min(8, os.cpu_count() or 1) if lm.device.type != "cpu" else 0
        workers = int(host_workers)
        self.prefetch = lm.device.type != "cpu"  # overlap host work with the model only where they do not share cores
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stcg-host") if workers > 1 else None
        self.inputs = InputPreparer(
            self.tokenizer,
            self.prompt,
            self.Q,
            self.image_token_id,
            self.grid_side,
            closing_eos_id=self.eos_id if p.closes_prompt_with_eos else None,
            grid_shape=getattr(self.pixels, "grid_shape", None),
        )

    def close(self) -> None:
        """Shut the host thread pool down (idempotent); the engine cannot prepare batches in threads after it."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> STCGEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ settings read at run time
    @property
    def max_new_tokens(self) -> int:
        return self.passes.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        self.passes.max_new_tokens = value

    @property
    def min_new_tokens(self) -> int:
        """Greedy decoding bans </s> for this many steps (0; benchmarks force answer lengths on random weights)."""
        return self.passes.min_new_tokens

    @min_new_tokens.setter
    def min_new_tokens(self, value: int) -> None:
        self.passes.min_new_tokens = value

    @property
    def max_side(self) -> int:
        """Longer images are downscaled to this many pixels before perturbation (boxes stay in original pixels)."""
        return self.inputs.max_side

    @max_side.setter
    def max_side(self, value: int) -> None:
        self.inputs.max_side = value

    # ------------------------------------------------------------------ public
    @property
    def params(self) -> dict:
        """Everything that determines this engine's numbers (stored with every STCG and in ``Run.params``):
        the ``EngineConfig`` as the engine resolved it, plus what the model fixes."""
        return {
            "results_version": RESULTS_VERSION,
            "model": self.lm.name,
            "dtype": str(self.lm.dtype).replace("torch.", ""),
            "layers": self.layers.describe(),
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
            "prompt": self.prompt,
            "language_model": self.passes.kind,
            "deletion_steps": self.deletion_steps,
            "num_query_tokens": self.Q,
            "grid": self.grid_side,
            "fill": list(self.fill),
            "max_side": self.max_side,
            "perturbations": [{"kind": p.kind, **p.params} for p in self.perturbations],
        }

    def explain(
        self, examples: Sequence[VQAInput], batch_size: int = 8, progress: Callable[[int], None] | None = None
    ) -> list[STCGraph]:
        """STCGs for ``examples`` in order, ``batch_size`` examples (x all variants) per pass.

        The host work of the next batch (perturbed images, pixel tensors) runs in a background
        thread while the model works on the current one."""
        out: list[STCGraph] = []
        chunks = [examples[s : s + batch_size] for s in range(0, len(examples), batch_size)]
        with ThreadPoolExecutor(1, thread_name_prefix="stcg-prefetch") as ahead:
            for host, chunk in zip(prefetched(ahead if self.prefetch else None, self.prepare_batch, chunks), chunks):
                out.extend(self.explain_batch(chunk, host))
                if progress:
                    progress(len(chunk))
        return out

    def prepare_batch(self, examples: Sequence[VQAInput]) -> HostBatch:
        """CPU-only work of a batch: tokenising, perturbing (those that need no attribution) and
        preprocessing every image variant. Safe to run in another thread while the model works."""
        prepared = [self._prepare(ex) for ex in examples]
        plain = [i for i, p in enumerate(self.perturbations) if not p.needs_attribution]

        def variants(ex: PreparedExample) -> list[np.ndarray]:
            return [ex.pixels] + [self._perturb(ex, self.perturbations[k]) for k in plain]

        rows = [(ex, a) for ex, arrays in zip(prepared, self._map(variants, prepared)) for a in arrays]
        return HostBatch(list(examples), prepared, rows, self._pixel_values([a for _, a in rows], device=False))

    @torch.no_grad()
    def explain_batch(self, examples: Sequence[VQAInput], host: HostBatch | None = None) -> list[STCGraph]:
        """STCGs of one batch; ``host`` is this batch's ``prepare_batch`` result when made ahead."""
        if host is None or [e.example_id for e in host.examples] != [e.example_id for e in examples]:
            host = self.prepare_batch(examples)
        prepared = host.prepared
        plain = [i for i, p in enumerate(self.perturbations) if not p.needs_attribution]
        salient = [i for i, p in enumerate(self.perturbations) if p.needs_attribution]

        # pass 1: clean + perturbations that need no attribution; clean answers come from it
        per_ex1 = 1 + len(plain)
        res1 = self.passes.run_pass(host.rows, answers=None, per_example=per_ex1, pv=host.pixel_values)
        answers = [self.passes.trim_answer(res1.greedy[i * per_ex1]) for i in range(len(prepared))]
        is_eos = [np.array([t == self.eos_id for t in a]) for a in answers]
        clean = [self._derive(ex, res1, i * per_ex1) for i, ex in enumerate(prepared)]
        attributions = [clean_attribution(d["S"], e) for d, e in zip(clean, is_eos)]

        # pass 2: perturbations that need the clean attribution
        res2 = None
        if salient:

            def salient_variants(i: int) -> list[np.ndarray]:
                return [self._perturb(prepared[i], self.perturbations[k], attributions[i]) for k in salient]

            rows2 = [
                (prepared[i], a)
                for i, arrays in enumerate(self._map(salient_variants, range(len(prepared))))
                for a in arrays
            ]
            res2 = self.passes.run_pass(rows2, answers=[a for a in answers for _ in salient], per_example=1)

        rows2_images = [a for _, a in rows2] if salient else []

        # deletion curves (teacher-forced probabilities only)
        curves = None
        if self.deletion_steps > 0:
            curves = deletion_curves(
                self.passes, prepared, answers, attributions, self.deletion_steps, self.seed, self.fill
            )

        graphs = []
        for i, ex in enumerate(prepared):
            variant_rows: dict[int, tuple[PassResult, int]] = {}
            for j, k in enumerate(plain):
                variant_rows[k] = (res1, i * per_ex1 + 1 + j)
            for j, k in enumerate(salient):
                variant_rows[k] = (res2, i * len(salient) + j)
            perturbed = [
                PerturbedRow(self._derive(ex, res, row), res.step_logprob[row], self._decode(res.greedy[row]))
                for res, row in (variant_rows[k] for k in range(len(self.perturbations)))
            ]
            graphs.append(
                assemble_graph(
                    ex,
                    tokens=question_token_strings(self.tokenizer, ex),
                    answer=self._decode(answers[i]),
                    answer_tokens=answer_token_strings(self.tokenizer, answers[i]),
                    answer_is_eos=is_eos[i],
                    clean=clean[i],
                    attribution=attributions[i],
                    step_logprob=res1.step_logprob[i * per_ex1],
                    perturbations=self.perturbations,
                    perturbed=perturbed,
                    params=self.params,
                    store_dense=self.store_dense,
                    curve=None if curves is None else curves[i],
                )
            )
        if len(self.attributions) > 1:
            self._attach_methods(graphs, prepared, answers, is_eos, host, per_ex1, plain, salient, rows2_images)
        return graphs

    def _attach_methods(self, graphs, prepared, answers, is_eos, host, per_ex1, plain, salient, rows2_images):
        """Every other attribution method's maps (clean and under each perturbation, the clean answer
        teacher-forced) and every method's faithfulness scores, onto ``graphs`` (``attribution.explain``)."""
        from stcg_model.attribution.explain import ExampleRows, attach_methods

        rows = []
        for i, ex in enumerate(prepared):
            images: dict[int, np.ndarray] = {k: host.rows[i * per_ex1 + 1 + j][1] for j, k in enumerate(plain)}
            images.update({k: rows2_images[i * len(salient) + j] for j, k in enumerate(salient)})
            rows.append(
                ExampleRows(
                    example_id=ex.ex.example_id,
                    image=ex.pixels,
                    grid=ex.grid,
                    prompt_ids=self.passes.prompt_ids(ex),
                    token_positions=self.passes.question_positions(ex),
                    answer=answers[i],
                    is_eos=is_eos[i],
                    perturbed=[images[k] for k in range(len(self.perturbations))],
                    gt=graphs[i].gt,
                )
            )
        attach_methods(
            self.lm,
            graphs,
            rows,
            self.attributions,
            self._pixel_values,
            self.fill,
            seed=self.seed,
            steps=self.deletion_steps or 10,
        )

    # ------------------------------------------------------------------ host work
    def _map(self, fn, items) -> list:
        return thread_map(self._pool, fn, items)

    def _prepare(self, ex: VQAInput) -> PreparedExample:
        return self.inputs.prepare(ex)

    def _perturb(
        self, ex: PreparedExample, spec: PerturbationSpec, attribution: np.ndarray | None = None
    ) -> np.ndarray:
        ctx = PerturbationContext(fill=self.fill, grid=ex.grid, attribution=attribution)
        return apply_perturbation(spec, ex.pixels, self.seed, ex.ex.example_id, ctx)

    def _pixel_values(self, arrays: Sequence[np.ndarray], device: bool = True) -> torch.Tensor:
        """(N, 3, H, W) processor output for uint8 (or float [0, 1]) images; chunks run on the host threads.
        On the model's device and dtype unless ``device=False`` (then float32 on the CPU)."""
        pv = self.pixels(arrays, self._pool)
        return pv.to(self.lm.device, self.lm.dtype) if device else pv

    def _derive(self, ex: PreparedExample, res: PassResult, row: int) -> dict[str, np.ndarray]:
        p = self.passes
        slots = p.slot_positions(p.prompt_ids(ex))
        return derive(res.C[row], res.E[row], res.D[row], p.question_positions(ex), slots)

    def _decode(self, ids: list[int]) -> str:
        return decode_answer(self.tokenizer, ids, self.eos_id)

    # ------------------------------------------------------------------ the passes' steps under their old names
    # (tests and benchmarks drive single steps; new code calls ``self.passes`` directly)
    def _run_pass(self, rows: Sequence[Row], answers, per_example: int, pv: torch.Tensor | None = None) -> PassResult:
        return self.passes.run_pass(rows, answers, per_example, pv)

    def _answer_logprobs(self, rows: Sequence[Row], answers, pv: torch.Tensor | None = None) -> list[np.ndarray]:
        return self.passes.answer_logprobs(rows, answers, pv)

    def _greedy(self, **inputs) -> list[list[int]]:
        return self.passes.greedy(**inputs)

    def _trim_answer(self, ids: list[int]) -> list[int]:
        return self.passes.trim_answer(ids)

    def _encoder_inputs(self, rows: Sequence[Row]):
        return self.passes.prompt_inputs(rows)

    def _encode(self, rows: Sequence[Row], pv: torch.Tensor | None = None):
        return self.passes.encode(rows, pv)  # encoder-decoder models only

    def _teacher_forced(self, enc, am, answers):
        return self.passes.teacher_forced(enc, am, answers)  # encoder-decoder: (encoder outputs, mask, answers)
