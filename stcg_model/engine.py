"""The STCG engine: batched BLIP-2 passes with attention capture -> one ``STCGraph`` per example.

Per batch of examples, T5 language models (e.g. ``Salesforce/blip2-flan-t5-xl``):

1. every image variant (clean + each perturbation that needs no attribution) goes through the
   vision tower, Q-Former and T5 encoder ONCE (capturing ``C`` and ``E``);
2. greedy decoding from those encoder states gives the clean answer and every perturbed answer;
3. one teacher-forced decoder pass over all variants with the clean answer gives ``D`` and
   ``p(y | variant)``;
4. attribution-dependent perturbations (``saliency_patch_mask``) then run steps 1-3 on their
   images; optional deletion curves need only teacher-forced probabilities.

The expensive encoders run once per image; decoding reuses their states.

Decoder-only language models (OPT, e.g. ``Salesforce/blip2-opt-2.7b``) have no encoder, so the
same quantities come from the causal self-attention of one teacher-forced pass over
``[query slots | prompt | answer]`` (STCG_SPEC section 2, mapped in docs/stcg.md):

* ``E`` is the self-attention among the ``L`` prompt positions ``[query slots | prompt]``;
* ``D[t]`` is the attention row of the position that predicts answer token ``t`` (position
  ``L - 1 + t``), restricted to the prompt positions; it is not renormalised, so the visual
  mass ``v`` is the share of that row's whole attention that lands on the query slots.

The vision tower and Q-Former still run once per image; greedy decoding (left-padded,
KV-cached) and the teacher-forced pass reuse the projected query outputs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from stcg.errors import StcgError
from stcg.images import quantise, to_image
from stcg_model import alignment as A
from stcg_model.capture import AttentionCapture, LayerSelection
from stcg_model.config import EngineConfig
from stcg_model.graph import STCGraph
from stcg_model.loading import LoadedModel
from stcg_model.perturbations import (
    PerturbationContext,
    PerturbationSpec,
    apply_perturbation,
    rng_for,
)
from stcg_model.regions import RegionGrid
from stcg_model.text import group_tokens, normalize_answer, word_kind

RESULTS_VERSION = 2
"""Bumped whenever the same inputs and parameters give different numbers (2: perturbations on 8-bit
images, Gaussian noise from a torch generator). Part of an ingestion run's identity, so a run is
never resumed with results of another version mixed in."""


@dataclass
class VQAInput:
    """One question about one image. ``meta`` travels into ``STCGraph.meta`` unchanged."""

    example_id: str
    image: Image.Image
    question: str
    meta: dict = field(default_factory=dict)


@dataclass
class _Prepared:
    ex: VQAInput
    pixels: np.ndarray  # (H, W, 3) uint8 RGB (perturbations run on 8-bit images, as the processor sees them)
    grid: RegionGrid
    token_ids: list[int]  # the whole prompt after the query slots (e.g. question tokens + </s>)
    offsets: list[tuple[int, int]]  # character spans in the question ((0, 0) outside it)
    q_index: np.ndarray  # which of token_ids are question tokens (the STCG's Token nodes)
    original_size: tuple[int, int]  # (width, height) before any downscaling


@dataclass
class _PassResult:
    """Per-row outputs of one encode + decode pass (row = one image variant)."""

    C: list[np.ndarray]
    E: list[np.ndarray]
    D: list[np.ndarray]
    step_logprob: list[np.ndarray]
    greedy: list[list[int]]


@dataclass
class HostBatch:
    """The host-side (CPU) work of one batch, done before the model needs it (see ``prepare_batch``)."""

    examples: list
    prepared: list[_Prepared]
    rows: list[tuple[_Prepared, np.ndarray]]  # pass-1 rows: clean + plain perturbations per example
    pixel_values: torch.Tensor  # (rows, 3, H, W) on the CPU, processor output


@dataclass(frozen=True)
class FastBlipPixels:
    """The BLIP image processor's arithmetic (PIL resize, rescale, normalise) for a batch at once.

    Equal to ``image_processor(images=...)["pixel_values"]`` (tested to 1e-6) and several times
    faster, because the per-image Python of the generic processor goes away. Only built for the
    plain BLIP configuration (fixed height x width resize, no crop, no pad); otherwise ``None``.
    """

    height: int
    width: int
    resample: int
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_processor(cls, ip) -> FastBlipPixels | None:
        size = getattr(ip, "size", None) or {}
        get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        plain = (
            getattr(ip, "do_resize", False)
            and get("height")
            and get("width")
            and getattr(ip, "do_rescale", False)
            and getattr(ip, "do_normalize", False)
            and not getattr(ip, "do_center_crop", False)
            and not getattr(ip, "do_pad", False)
            and type(ip).__name__.startswith("BlipImageProcessor")
        )
        if not plain:
            return None
        mean, std = list(ip.image_mean), list(ip.image_std)
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(
            int(get("height")), int(get("width")), int(ip.resample), float(ip.rescale_factor), tuple(mean), tuple(std)
        )

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 3, H, W) contiguous float32 from (h, w, 3) RGB arrays: uint8, or float in [0, 1],
        which are first quantised as saving them as an image would (``quantise``)."""
        same = all(a.shape[:2] == (self.height, self.width) for a in images)
        if same and all(a.dtype == np.uint8 for a in images):
            x = torch.from_numpy(np.stack(images))  # (N, H, W, 3) uint8
        elif same and all(a.dtype == np.float32 for a in images):
            x = torch.from_numpy(np.stack(images)).clamp_(0.0, 1.0).mul_(255.0).round_()
        else:
            out = np.empty((len(images), self.height, self.width, 3), dtype=np.uint8)
            for i, a in enumerate(images):
                a = quantise(a)
                if a.shape[:2] != (self.height, self.width):
                    a = np.asarray(Image.fromarray(a, "RGB").resize((self.width, self.height), resample=self.resample))
                out[i] = a
            x = torch.from_numpy(out)
        mean = torch.tensor(self.mean, dtype=torch.float64)
        std = torch.tensor(self.std, dtype=torch.float64)
        a = (self.scale / std).to(torch.float32).view(1, 3, 1, 1)  # (x * scale - mean) / std = x * a + b
        b = (-mean / std).to(torch.float32).view(1, 3, 1, 1)
        pv = torch.empty((len(images), 3, self.height, self.width), dtype=torch.float32)
        pv.copy_(x.permute(0, 3, 1, 2))  # one pass: layout and dtype
        return torch.addcmul(b, pv, a, out=pv)


def check_prompt(prompt: str) -> str:
    """The prompt template, or a one-line ``StcgError`` when it lacks exactly one ``{question}``."""
    if prompt.count("{question}") != 1:
        raise StcgError(f"the prompt must contain {{question}} exactly once, got {prompt!r}")
    return prompt


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
    """Builds STCGs for batches of examples with one loaded BLIP-2 model.

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
        self.decoder_only = not lm.is_encoder_decoder
        prompt = config.prompt
        if prompt is None:
            prompt = "Question: {question} Answer:" if self.decoder_only else "{question}"
        self.prompt = check_prompt(prompt)
        self.model = lm.model
        self.processor = lm.processor
        self.tokenizer = lm.processor.tokenizer
        self.perturbations = config.perturbation_specs()
        self.layers = config.layer_selection()
        self.seed = config.seed
        self.max_new_tokens = config.max_new_tokens
        self.deletion_steps = config.deletion_steps
        self.store_dense = store_dense
        if host_workers is None:  # on a CPU-only run the model already uses every core: threads would only contend
            host_workers = min(8, os.cpu_count() or 1) if lm.device.type != "cpu" else 0
        workers = int(host_workers)
        self.prefetch = lm.device.type != "cpu"  # overlap host work with the model only where they do not share cores
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stcg-host") if workers > 1 else None
        self._tokenizer_lock = threading.Lock()
        self.max_side = 1024  # longer images are downscaled before perturbation (boxes stay in original pixels)
        self.min_new_tokens = 0  # benchmarks force a fixed answer length on random weights
        cfg = self.model.config
        self.Q = int(cfg.num_query_tokens)
        self.image_token_id = int(cfg.image_token_id)
        vc = cfg.vision_config
        self.grid_side = int(vc.image_size // vc.patch_size)
        self.fill = tuple(float(x) for x in self.processor.image_processor.image_mean)
        tc = cfg.text_config
        self.eos_id = int(tc.eos_token_id)
        self.pad_id = int(tc.pad_token_id if tc.pad_token_id is not None else tc.eos_token_id)
        start = getattr(tc, "decoder_start_token_id", None)
        self.start_id = int(start) if start is not None else self.pad_id

    def close(self) -> None:
        """Shut the host thread pool down (idempotent); the engine cannot prepare batches in threads after it."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> STCGEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
            "language_model": "decoder-only" if self.decoder_only else "encoder-decoder",
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

    def _map(self, fn, items) -> list:
        items = list(items)
        return list(self._pool.map(fn, items)) if self._pool is not None and len(items) > 1 else [fn(x) for x in items]

    def prepare_batch(self, examples: Sequence[VQAInput]) -> HostBatch:
        """CPU-only work of a batch: tokenising, perturbing (those that need no attribution) and
        preprocessing every image variant. Safe to run in another thread while the model works."""
        prepared = [self._prepare(ex) for ex in examples]
        plain = [i for i, p in enumerate(self.perturbations) if not p.needs_attribution]

        def variants(ex: _Prepared) -> list[np.ndarray]:
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
        rows1 = host.rows
        per_ex1 = 1 + len(plain)
        res1 = self._run_pass(rows1, answers=None, per_example=per_ex1, pv=host.pixel_values)
        answers = [self._trim_answer(res1.greedy[i * per_ex1]) for i in range(len(prepared))]

        clean = []
        for i, ex in enumerate(prepared):
            r = i * per_ex1
            d = self._derive(ex, res1.C[r], res1.E[r], res1.D[r])
            d["attribution"] = self._attribution(d["S"], np.array([t == self.eos_id for t in answers[i]]))
            clean.append(d)

        # pass 2: perturbations that need the clean attribution
        res2 = None
        if salient:

            def salient_variants(i: int) -> list[np.ndarray]:
                return [self._perturb(prepared[i], self.perturbations[k], clean[i]["attribution"]) for k in salient]

            rows2 = [
                (prepared[i], a)
                for i, arrays in enumerate(self._map(salient_variants, range(len(prepared))))
                for a in arrays
            ]
            res2 = self._run_pass(rows2, answers=[a for a in answers for _ in salient], per_example=1)

        # deletion curves (teacher-forced probabilities only)
        curves = self._deletion_curves(prepared, answers, clean) if self.deletion_steps > 0 else None

        graphs = []
        for i, ex in enumerate(prepared):
            variant_rows: dict[int, tuple[_PassResult, int]] = {}
            for j, k in enumerate(plain):
                variant_rows[k] = (res1, i * per_ex1 + 1 + j)
            for j, k in enumerate(salient):
                variant_rows[k] = (res2, i * len(salient) + j)
            graphs.append(
                self._assemble(
                    ex, answers[i], res1, i * per_ex1, clean[i], variant_rows, None if curves is None else curves[i]
                )
            )
        return graphs

    # ------------------------------------------------------------------ preparation
    def _prepare(self, ex: VQAInput) -> _Prepared:
        image = ex.image
        orig = image.size
        if max(orig) > self.max_side:  # the model sees 224 px; perturb a copy of sane size
            s = self.max_side / max(orig)
            image = image.resize((max(1, round(orig[0] * s)), max(1, round(orig[1] * s))), Image.BILINEAR)
        pixels = np.array(image.convert("RGB"), dtype=np.uint8)  # writable (PIL arrays are read-only)
        h, w = pixels.shape[:2]
        head, tail = self.prompt.split("{question}")
        text = head + ex.question + tail
        q0, q1 = len(head), len(head) + len(ex.question)
        max_len = max(8, min(getattr(self.tokenizer, "model_max_length", 512) or 512, 100_000) - self.Q)
        with self._tokenizer_lock:  # fast tokenizers must not be entered from two threads at once
            enc = self.tokenizer(
                text, return_offsets_mapping=True, add_special_tokens=True, truncation=True, max_length=max_len
            )
        ids = list(enc["input_ids"])
        spans = [tuple(o) for o in enc["offset_mapping"]]
        if not self.decoder_only and (not ids or ids[-1] != self.eos_id):
            ids.append(self.eos_id)  # T5 encoders expect a closing </s>
            spans.append((0, 0))
        # a question token is one whose character span overlaps the question (a BPE token may carry
        # the space before it); BOS/EOS (empty spans) and the prompt's own words are context only
        clamped = [(max(s, q0), min(e, q1)) for s, e in spans]
        inside = [t != self.image_token_id and e > s for t, (s, e) in zip(ids, clamped)]
        offsets = [(s - q0, e - q0) if k else (0, 0) for k, (s, e) in zip(inside, clamped)]
        q_index = np.flatnonzero(inside)
        return _Prepared(ex, pixels, RegionGrid(self.grid_side, w, h), ids, offsets, q_index, orig)

    def _perturb(self, ex: _Prepared, spec: PerturbationSpec, attribution: np.ndarray | None = None) -> np.ndarray:
        ctx = PerturbationContext(fill=self.fill, grid=ex.grid, attribution=attribution)
        return apply_perturbation(spec, ex.pixels, self.seed, ex.ex.example_id, ctx)

    def _pixel_values(self, arrays: Sequence[np.ndarray], device: bool = True) -> torch.Tensor:
        """(N, 3, H, W) processor output for uint8 (or float [0, 1]) images; chunks run on the host threads."""
        fast = FastBlipPixels.for_processor(self.processor.image_processor)

        def process(chunk: Sequence[np.ndarray]) -> torch.Tensor:
            if fast is not None:
                return fast(chunk)
            return self.processor.image_processor(images=[to_image(a) for a in chunk], return_tensors="pt")[
                "pixel_values"
            ]

        step = 8 if self._pool is not None else max(1, len(arrays))  # one call (no concatenation) without threads
        parts = self._map(process, [arrays[s : s + step] for s in range(0, len(arrays), step)])
        pv = torch.cat(parts) if len(parts) > 1 else parts[0]
        return pv.to(self.lm.device, self.lm.dtype) if device else pv

    def _encoder_inputs(self, rows: Sequence[tuple[_Prepared, np.ndarray]]):
        L = max(self.Q + len(ex.token_ids) for ex, _ in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        am = torch.zeros((len(rows), L), dtype=torch.long)
        for r, (ex, _) in enumerate(rows):
            seq = [self.image_token_id] * self.Q + ex.token_ids
            ids[r, : len(seq)] = torch.tensor(seq)
            am[r, : len(seq)] = 1
        return ids.to(self.lm.device), am.to(self.lm.device)

    # ------------------------------------------------------------------ model passes
    @torch.no_grad()
    def _encode(self, rows, pv: torch.Tensor | None = None):
        """Vision + Q-Former + T5 encoder for every row; returns encoder outputs and attention mask."""
        model = self.model
        pv = self._pixel_values([a for _, a in rows]) if pv is None else pv.to(self.lm.device, self.lm.dtype)
        ids, am = self._encoder_inputs(rows)
        feats = model.get_image_features(pv, return_dict=True).pooler_output
        embeds = model.get_input_embeddings()(ids)
        mask = (ids == self.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
        enc = model.language_model.get_encoder()(inputs_embeds=embeds, attention_mask=am, return_dict=True)
        return enc, am

    @torch.no_grad()
    def _teacher_forced(self, enc, am, answers: Sequence[list[int]]):
        """Decoder pass with the given answers; returns (logprob per step list, T)."""
        T = max(len(a) for a in answers)
        dec_in = torch.full((len(answers), T), self.pad_id, dtype=torch.long)
        labels = torch.full((len(answers), T), -1, dtype=torch.long)
        dmask = torch.zeros((len(answers), T), dtype=torch.long)
        for r, a in enumerate(answers):
            seq = [self.start_id] + list(a[:-1])
            dec_in[r, : len(seq)] = torch.tensor(seq)
            labels[r, : len(a)] = torch.tensor(a)
            dmask[r, : len(a)] = 1
        dev = self.lm.device
        out = self.model.language_model(
            encoder_outputs=enc,
            attention_mask=am,
            decoder_input_ids=dec_in.to(dev),
            decoder_attention_mask=dmask.to(dev),
            return_dict=True,
        )
        logp = out.logits.float().log_softmax(-1)
        lab = labels.to(dev)
        gathered = logp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return [gathered[r, : len(a)].cpu().numpy() for r, a in enumerate(answers)]

    def _run_pass(
        self, rows, answers: Sequence[list[int]] | None, per_example: int, pv: torch.Tensor | None = None
    ) -> _PassResult:
        """Encode all rows once, greedy-decode them, and teacher-force each example's clean answer.

        Greedy decoding re-runs the decoder on the whole prefix at every step (no cache), so its
        last step IS the teacher-forced pass of every row on its own greedy answer: the decoder
        cross-attention and log-probabilities of that pass are kept, and only rows whose greedy
        answer differs from their teacher-forcing target get a separate teacher-forced pass."""
        if self.decoder_only:
            return self._run_pass_decoder_only(rows, answers, per_example, pv)
        with AttentionCapture(self.model, self.layers) as cap:
            with cap.recording("qformer.cross", "lm.encoder.self"):
                enc, am = self._encode(rows, pv)
            C_raw = cap.pop("qformer.cross")
            E_raw = cap.pop("lm.encoder.self")
            greedy, own_lp, own_D = self._greedy_teacher_forced(enc, am, cap)
            answers = answers or self._clean_answers(greedy, per_example)
            step_lp = [own_lp[r][: len(a)] for r, a in enumerate(answers)]
            D_rows = [own_D[r] for r in range(len(rows))]
            redo = [r for r, a in enumerate(answers) if greedy[r] != a]
            if redo:
                idx = torch.tensor(redo, device=am.device)
                sub = type(enc)(last_hidden_state=enc.last_hidden_state.index_select(0, idx))
                with cap.recording("lm.decoder.cross"):
                    lp = self._teacher_forced(sub, am.index_select(0, idx), [answers[r] for r in redo])
                D_sub = cap.pop("lm.decoder.cross").cpu().numpy()
                for j, r in enumerate(redo):
                    step_lp[r], D_rows[r] = lp[j], D_sub[j]
        C_all = A.query_region_attention(C_raw.cpu().numpy())
        E_all = E_raw.cpu().numpy()
        C, E, D = [], [], []
        for r, (ex, _) in enumerate(rows):
            L = self.Q + len(ex.token_ids)
            C.append(C_all[r])
            E.append(E_all[r, :L, :L])
            D.append(D_rows[r][: len(answers[r]), :L])
        return _PassResult(C, E, D, step_lp, greedy)

    @torch.no_grad()
    def _greedy_teacher_forced(self, enc, am, cap: AttentionCapture):
        """Greedy answers of an encoder-decoder LM, plus each row's per-step log p and decoder
        cross-attention (T, L) on its own answer, from the last full-prefix decoder pass."""
        dev = am.device
        R = am.shape[0]
        dec = torch.full((R, 1), self.start_id, dtype=torch.long, device=dev)
        done = torch.zeros(R, dtype=torch.bool, device=dev)
        for t in range(self.max_new_tokens):
            with cap.recording("lm.decoder.cross"):
                out = self.model.language_model(
                    encoder_outputs=enc, attention_mask=am, decoder_input_ids=dec, use_cache=False, return_dict=True
                )
            logits = out.logits[:, -1].float()
            if t < self.min_new_tokens:  # as generate's min_new_tokens processor does; out of place,
                # because out.logits (float32 already) is read again below for the step log p
                logits = logits.index_fill(-1, torch.tensor([self.eos_id], device=dev), float("-inf"))
            nxt = torch.where(done, torch.full_like(done, self.pad_id, dtype=torch.long), logits.argmax(-1))
            dec = torch.cat([dec, nxt[:, None]], 1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
        D_all = cap.pop("lm.decoder.cross").cpu().numpy()  # (R, T, L) of the last pass
        logp = out.logits.float().log_softmax(-1).gather(-1, dec[:, 1:, None]).squeeze(-1).cpu().numpy()
        greedy = [self._trim_answer(row) for row in dec[:, 1:].tolist()]
        return greedy, [logp[r, : len(g)] for r, g in enumerate(greedy)], [D_all[r] for r in range(R)]

    # ------------------------------------------------------------------ decoder-only (OPT) passes
    def _query_features(self, rows, pv: torch.Tensor | None = None) -> torch.Tensor:
        """(R, Q, d_lm) projected Q-Former outputs, one vision + Q-Former pass per row."""
        pv = self._pixel_values([a for _, a in rows]) if pv is None else pv.to(self.lm.device, self.lm.dtype)
        return self.model.get_image_features(pv, return_dict=True).pooler_output

    def _embed(self, seqs: Sequence[list[int]], feats: torch.Tensor, left_pad: bool):
        """Padded ``inputs_embeds`` with the query features scattered into the image slots."""
        N = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), N), self.pad_id, dtype=torch.long)
        am = torch.zeros((len(seqs), N), dtype=torch.long)
        for r, s in enumerate(seqs):
            sl = slice(N - len(s), N) if left_pad else slice(0, len(s))
            ids[r, sl] = torch.tensor(s)
            am[r, sl] = 1
        ids, am = ids.to(self.lm.device), am.to(self.lm.device)
        embeds = self.model.get_input_embeddings()(ids)
        slots = (ids == self.image_token_id) & am.bool()
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), feats.to(embeds.dtype))
        return embeds, am

    def _prompt_ids(self, ex: _Prepared) -> list[int]:
        return [self.image_token_id] * self.Q + ex.token_ids

    def _teacher_forced_decoder_only(self, rows, feats, answers: Sequence[list[int]]):
        """One causal pass over ``[slots | prompt | answer[:-1]]`` (right-padded); per-step log p."""
        seqs = [self._prompt_ids(ex) + list(a[:-1]) for (ex, _), a in zip(rows, answers)]
        embeds, am = self._embed(seqs, feats, left_pad=False)
        out = self.model.language_model(inputs_embeds=embeds, attention_mask=am, return_dict=True, use_cache=False)
        logp = out.logits.float().log_softmax(-1)
        result = []
        for r, ((ex, _), a) in enumerate(zip(rows, answers)):
            L = self.Q + len(ex.token_ids)
            pos = torch.arange(L - 1, L - 1 + len(a), device=logp.device)
            tgt = torch.tensor(a, device=logp.device)
            result.append(logp[r, pos, tgt].cpu().numpy())
        return result

    def _run_pass_decoder_only(self, rows, answers, per_example: int, pv: torch.Tensor | None = None) -> _PassResult:
        with AttentionCapture(self.model, self.layers) as cap:
            with cap.recording("qformer.cross"):
                feats = self._query_features(rows, pv)
            C_raw = cap.pop("qformer.cross")
            embeds, am = self._embed([self._prompt_ids(ex) for ex, _ in rows], feats, left_pad=True)
            greedy = self._greedy(inputs_embeds=embeds, attention_mask=am)
            answers = answers or self._clean_answers(greedy, per_example)
            with cap.recording("lm.self"):
                step_lp = self._teacher_forced_decoder_only(rows, feats, answers)
            A_raw = cap.pop("lm.self")
        C_all = A.query_region_attention(C_raw.cpu().numpy())
        A_all = A_raw.cpu().numpy()
        C, E, D = [], [], []
        for r, (ex, _) in enumerate(rows):
            L = self.Q + len(ex.token_ids)
            C.append(C_all[r])
            E.append(A_all[r, :L, :L])
            D.append(A_all[r, L - 1 : L - 1 + len(answers[r]), :L])
        return _PassResult(C, E, D, step_lp, greedy)

    def _answer_logprobs(self, rows, answers: Sequence[list[int]]) -> list[np.ndarray]:
        """Teacher-forced per-step log p of ``answers`` (no capture), for either kind of model."""
        if self.decoder_only:
            return self._teacher_forced_decoder_only(rows, self._query_features(rows), answers)
        enc, am = self._encode(rows)
        return self._teacher_forced(enc, am, answers)

    def _greedy(self, **inputs) -> list[list[int]]:
        """Greedy answers (trimmed token ids) of the language model from encoder outputs or embeddings."""
        gen = self.model.language_model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            min_new_tokens=self.min_new_tokens or None,
            num_beams=1,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
        )
        skip = (
            1 if not self.decoder_only else 0
        )  # T5 output starts with the decoder start token; OPT's holds new tokens only
        return [self._trim_answer(seq[skip:].tolist()) for seq in gen]

    @staticmethod
    def _clean_answers(greedy: list[list[int]], per_example: int) -> list[list[int]]:
        """Each row's teacher-forcing target: the greedy answer of its example's clean (first) row."""
        return [greedy[(r // per_example) * per_example] for r in range(len(greedy))]

    def _trim_answer(self, ids: list[int]) -> list[int]:
        """Generated ids up to and including the first </s>; padding dropped; never empty."""
        out = []
        for t in ids:
            if t == self.pad_id and out:
                break
            out.append(int(t))
            if t == self.eos_id:
                break
        return out or [self.eos_id]

    # ------------------------------------------------------------------ quantities
    def _token_positions(self, ex: _Prepared) -> np.ndarray:
        return self.Q + ex.q_index  # question tokens only (</s>, BOS and prompt words excluded)

    def _derive(self, ex: _Prepared, C, E, D) -> dict:
        pos = self._token_positions(ex)
        W, m = A.structural(E, C, pos)
        S, v, step_token = A.temporal(D, C, pos)
        return {"C": C, "E": E, "D": D, "W": W, "m": m, "S": S, "v": v, "step_token": step_token}

    def _attribution(self, S: np.ndarray, is_eos: np.ndarray) -> np.ndarray:
        rows = S[~is_eos] if (~is_eos).any() else S
        return rows.mean(0)

    def _deletion_curves(self, prepared, answers, clean) -> list[tuple[np.ndarray, np.ndarray]]:
        """p(y) after greying the first s/steps of the regions (s = 1..steps), in decreasing clean
        attribution order and in a seeded random order. The last step (every region grey) is the
        same image for both orders, so it is computed once."""
        steps = self.deletion_steps
        fill = quantise(np.asarray(self.fill, dtype=np.float32))
        rows, row_answers = [], []
        for i, ex in enumerate(prepared):
            P = ex.grid.num_regions
            attr = clean[i]["attribution"]
            order = np.lexsort((np.arange(P), -attr))
            rand = rng_for(self.seed, ex.ex.example_id, "deletion_random").permutation(P)
            for o in (order, rand):
                for s in range(1, steps):
                    k = int(round(s * P / steps))
                    rows.append((ex, ex.grid.fill_regions(ex.pixels.copy(), o[:k], fill)))
            rows.append((ex, ex.grid.fill_regions(ex.pixels.copy(), order, fill)))  # s = steps: all regions
            row_answers.extend([answers[i]] * (2 * steps - 1))
        probs = []
        chunk = max(2 * steps, 7 * len(prepared))  # about the rows of the main pass: same memory bound
        for s in range(0, len(rows), chunk):
            lps = self._answer_logprobs(rows[s : s + chunk], row_answers[s : s + chunk])
            probs.extend(float(np.exp(lp.sum())) for lp in lps)
        out = []
        per = 2 * steps - 1
        for i in range(len(prepared)):
            vals = probs[i * per : (i + 1) * per]
            full = vals[-1]
            out.append((vals[: steps - 1] + [full], vals[steps - 1 : 2 * steps - 2] + [full]))
        return out

    def _assemble(
        self,
        ex: _Prepared,
        answer: list[int],
        res1: _PassResult,
        clean_row: int,
        clean: dict,
        variant_rows: dict,
        curve,
    ) -> STCGraph:
        tok = self.tokenizer
        q_ids = [ex.token_ids[i] for i in ex.q_index]
        tokens = [t.replace("\u2581", "").replace("\u0120", "") or t for t in tok.convert_ids_to_tokens(q_ids)]
        words, token_word = group_tokens(ex.ex.question, [ex.offsets[i] for i in ex.q_index])
        is_eos = np.array([t == self.eos_id for t in answer])
        answer_tokens = [t.replace("\u2581", "") or t for t in tok.convert_ids_to_tokens(answer)]
        answer_text = self._decode(answer)
        step_lp = res1.step_logprob[clean_row].astype(np.float32)
        p_clean = float(np.exp(step_lp.astype(np.float64).sum()))
        attribution = clean["attribution"]

        K = len(self.perturbations)
        C_p, W_p, S_p, p_p, pert_answers = [], [], [], [], []
        for k in range(K):
            res, row = variant_rows[k]
            d = self._derive(ex, res.C[row], res.E[row], res.D[row])
            C_p.append(d["C"])
            W_p.append(d["W"])
            S_p.append(d["S"])
            p_p.append(float(np.exp(res.step_logprob[row].astype(np.float64).sum())))
            pert_answers.append(self._decode(res.greedy[row]))
        f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
        C_p, W_p, S_p = f32(C_p), f32(W_p), f32(S_p)
        dW = f32(clean["W"])[None] - W_p
        n = len(q_ids)
        g = STCGraph(
            example_id=ex.ex.example_id,
            question=ex.ex.question,
            answer=answer_text,
            tokens=tokens,
            words=words,
            token_word=token_word,
            word_kinds=[word_kind(w) for w in words],
            answer_tokens=answer_tokens,
            answer_is_eos=[bool(x) for x in is_eos],
            perturbations=[p.kind for p in self.perturbations],
            perturbation_params=[dict(p.params) for p in self.perturbations],
            perturbed_answers=pert_answers,
            grid=self.grid_side,
            image_size=ex.original_size,
            p_clean=p_clean,
            params=self.params,
            meta=dict(ex.ex.meta),
            C=f32(clean["C"]),
            E=f32(clean["E"]) if self.store_dense else None,
            D=f32(clean["D"]),
            W=f32(clean["W"]),
            m=f32(clean["m"]),
            S=f32(clean["S"]),
            v=f32(clean["v"]),
            step_token=f32(clean["step_token"]),
            drift=A.drift(f32(clean["S"])),
            attribution=f32(attribution),
            step_logprob=step_lp,
            boxes=RegionGrid(self.grid_side, *ex.original_size).boxes(),
            C_pert=C_p,
            W_pert=W_p,
            S_pert=S_p,
            dW=dW,
            dS=f32(clean["S"])[None] - S_p,
            dC=f32(clean["C"])[None] - C_p,
            dW_fro=f32(np.sqrt((dW.astype(np.float64) ** 2).sum(axis=(1, 2)))) if K else f32(np.zeros(0)),
            dW_token=f32(np.linalg.norm(dW, axis=2)) if K else f32(np.zeros((0, n))),
            p_pert=f32(p_p),
            dp=f32(p_clean - np.asarray(p_p, dtype=np.float64)) if K else f32(np.zeros(0)),
            answer_changed=np.array(
                [normalize_answer(a) != normalize_answer(answer_text) for a in pert_answers], dtype=bool
            ),
        )
        if curve is not None:
            g.deletion_curve = f32([p_clean, *curve[0]])
            g.deletion_curve_random = f32([p_clean, *curve[1]])
        return g

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([t for t in ids if t != self.eos_id], skip_special_tokens=True).strip()
