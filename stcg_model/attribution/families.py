"""The attention chain of each BLIP-2 model family, traced layer by layer with heads kept.

``ChainTrace`` hooks every attention module on the path from the image to the answer and records
its weights ``(B, H, q, k)`` (eager attention only on those modules, as ``stcg_model.families.capture``
does); under ``torch.enable_grad`` the recorded tensors stay in the autograd graph, so a method can
take ``torch.autograd.grad`` of an answer's log-probability with respect to them.

Two families behind one interface (``family_for(lm)`` picks one):

- ``EncoderDecoderFamily`` (T5): Q-Former self/cross -> encoder self -> decoder self/cross.
  Token rows come from the encoder relevancy, step rows from the decoder's.
- ``DecoderOnlyFamily`` (OPT): Q-Former self/cross -> causal self-attention over
  ``[query slots | prompt | answer]``; token rows are prompt positions, step ``t`` is the row of the
  position that predicts answer token ``t`` (``L - 1 + t``), as in docs/stcg.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionBatch
from stcg_model.families.blip2.passes import pad_ids
from stcg_model.families.capture import WANTS_WEIGHTS
from stcg_model.families.inputs import TokenIds


@dataclass
class Traced:
    """The attention weights of one traced forward pass, ``(B, H, q, k)`` per layer, the answer's
    per-step log-probabilities ``logp`` (B, T, float64) and pre-softmax logits ``logit`` (B, T) of its
    tokens (both 0 beyond a row's answer)."""

    qformer_self: list[torch.Tensor]
    qformer_cross: list[torch.Tensor | None]  # None for a Q-Former layer without cross-attention
    lm_self: list[torch.Tensor]  # T5: encoder self-attention; OPT: the causal self-attention
    dec_self: list[torch.Tensor]  # T5 only
    dec_cross: list[torch.Tensor]  # T5 only
    logp: torch.Tensor
    step_mask: torch.Tensor  # (B, T) bool: which steps belong to each row's answer
    logit: torch.Tensor | None = None

    def target(self, kind: str) -> torch.Tensor:
        """(B, T) what gradient methods differentiate: ``logit`` (the answer token's pre-softmax
        score, as Chefer et al. and Grad-CAM do) or ``logp`` (its log-probability)."""
        if kind == "logit":
            return self.logit
        if kind == "logp":
            return self.logp
        raise ValueError(f"unknown gradient target {kind!r}: logit or logp")

    def tensors(self) -> list[torch.Tensor]:
        """Every recorded map, in a fixed order (for ``torch.autograd.grad``)."""
        return [
            *self.qformer_self,
            *[c for c in self.qformer_cross if c is not None],
            *self.lm_self,
            *self.dec_self,
            *self.dec_cross,
        ]

    def rebuild(self, maps: Sequence[torch.Tensor]) -> Traced:
        """A ``Traced`` of the same layout holding ``maps`` (e.g. per-layer ``Abar``) instead."""
        it = iter(maps)
        take = lambda n: [next(it) for _ in range(n)]  # noqa: E731
        qs = take(len(self.qformer_self))
        qc = [None if c is None else next(it) for c in self.qformer_cross]
        return Traced(
            qs,
            qc,
            take(len(self.lm_self)),
            take(len(self.dec_self)),
            take(len(self.dec_cross)),
            self.logp,
            self.step_mask,
            self.logit,
        )


class _Recorder:
    """Forward hooks that keep the weights output of a list of attention modules."""

    def __init__(self, modules: Sequence[torch.nn.Module | None], index: int):
        self.modules, self.index = list(modules), index
        self.maps: list[torch.Tensor | None] = [None] * len(self.modules)

    def hook(self, i: int):
        def fn(module, args, output):
            w = output[self.index]
            if w is None:
                raise RuntimeError(
                    f"{type(module).__name__} returned no attention weights; load the model with "
                    "stcg_model.families.blip2.loading (attention implementation 'stcg_capture') or 'eager'"
                )
            self.maps[i] = w

        return fn


@contextmanager
def _recording(groups: Sequence[_Recorder]):
    handles = []
    try:
        for g in groups:
            for i, m in enumerate(g.modules):
                if m is None:
                    continue
                setattr(m, WANTS_WEIGHTS, True)
                handles.append(m.register_forward_hook(g.hook(i)))
        yield
    finally:
        for h in handles:
            h.remove()
        for g in groups:
            for m in g.modules:
                if m is not None:
                    setattr(m, WANTS_WEIGHTS, False)


class ModelFamily:
    """One family's traced forward pass, answer log-probabilities and relevancy chain."""

    def __init__(self, lm):
        self.lm = lm
        self.model = lm.model
        ids = TokenIds.of(self.model.config)
        self.Q, self.image_token_id = ids.Q, ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id
        qf = self.model.qformer.encoder.layer
        self._qself = _Recorder([layer.attention.attention for layer in qf], 1)
        self._qcross = _Recorder(
            [layer.crossattention.attention if getattr(layer, "has_cross_attention", False) else None for layer in qf],
            1,
        )

    # -- subclasses
    def trace(self, batch: AttributionBatch, pixel_values: torch.Tensor | None = None) -> Traced:
        raise NotImplementedError

    def token_step_rows(
        self, enc_rel: torch.Tensor, dec_rel: torch.Tensor | None, batch: AttributionBatch, r: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def lm_relevance(self, maps: Traced) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    # -- shared
    def answer_logprobs(self, batch: AttributionBatch, pixel_values: torch.Tensor) -> list[np.ndarray]:
        """Per row, the per-step log p (T_r,) of its answer, teacher-forced on ``pixel_values``
        (one row per batch row; no maps recorded, no gradients)."""
        with torch.no_grad():
            t = self.trace(batch, pixel_values, record=False)
        lp = t.logp.double().cpu().numpy()
        return [lp[r, : len(a)] for r, a in enumerate(batch.answers)]

    def qformer_relevance(self, maps: Traced) -> torch.Tensor:
        """(B, Q, 1 + P) query -> image-position relevancy of per-layer ``Abar`` maps."""
        return R.qformer_relevance(maps.qformer_self, maps.qformer_cross)

    def maps_to_regions(self, maps: Traced, batch: AttributionBatch) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per row: ``W`` (n, P) and ``S`` (T, P) through the relevancy chain of ``Abar`` maps."""
        R_qi = self.qformer_relevance(maps)
        R_qp = R_qi[..., 1:]  # CLS dropped, not renormalised (docs/spec.md section 6)
        enc_rel, dec_rel = self.lm_relevance(maps)
        Ws, Ss = [], []
        for r in range(len(batch)):
            tok_rows, step_rows = self.token_step_rows(enc_rel, dec_rel, batch, r)
            Ws.append(R.relevance_to_regions(tok_rows[None], R_qp[r : r + 1])[0].double().cpu().numpy())
            Ss.append(R.relevance_to_regions(step_rows[None], R_qp[r : r + 1])[0].double().cpu().numpy())
        return Ws, Ss

    def _answer_targets(self, answers: Sequence[list[int]]):
        """Decoder-side tensors of the answers: labels (B, T) with -1 padding and the step mask."""
        T = max(len(a) for a in answers)
        labels = torch.full((len(answers), T), -1, dtype=torch.long)
        for r, a in enumerate(answers):
            labels[r, : len(a)] = torch.tensor(a, dtype=torch.long)
        return labels, labels >= 0


class EncoderDecoderFamily(ModelFamily):
    """BLIP-2 with a T5 language model."""

    def __init__(self, lm):
        super().__init__(lm)
        lmod = self.model.language_model
        self._enc = _Recorder([b.layer[0].SelfAttention for b in lmod.encoder.block], 2)
        self._dself = _Recorder([b.layer[0].SelfAttention for b in lmod.decoder.block], 2)
        self._dcross = _Recorder([b.layer[1].EncDecAttention for b in lmod.decoder.block], 2)

    def trace(self, batch: AttributionBatch, pixel_values: torch.Tensor | None = None, record: bool = True) -> Traced:
        """One teacher-forced forward of every row on its answer; maps recorded when ``record``."""
        dev = self.lm.device
        pv = batch.pixel_values if pixel_values is None else pixel_values
        ids, am = pad_ids([list(p) for p in batch.prompt_ids], self.pad_id)
        labels, step_mask = self._answer_targets(batch.answers)
        dec_in = torch.full_like(labels, self.pad_id)
        dec_in[:, 0] = self.start_id
        dec_in[:, 1:] = labels[:, :-1].clamp(min=0)
        dec_in[~step_mask] = self.pad_id
        groups = [self._qself, self._qcross, self._enc, self._dself, self._dcross] if record else []
        with _recording(groups):
            out = self.model(
                pixel_values=pv.to(dev, self.lm.dtype),
                input_ids=ids.to(dev),
                attention_mask=am.to(dev),
                decoder_input_ids=dec_in.to(dev),
                decoder_attention_mask=step_mask.long().to(dev),
                return_dict=True,
            )
        logp_all = out.logits.double().log_softmax(-1)  # float64: see ModelPasses.teacher_forced
        lab = labels.to(dev)
        logp = logp_all.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1) * step_mask.to(dev)
        logit = out.logits.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1) * step_mask.to(dev)
        maps = lambda g: list(g.maps) if record else []  # noqa: E731
        return Traced(
            maps(self._qself),
            maps(self._qcross) if record else [],
            maps(self._enc),
            maps(self._dself),
            maps(self._dcross),
            logp,
            step_mask.to(dev),
            logit,
        )

    def lm_relevance(self, maps: Traced):
        enc = R.encoder_relevance(maps.lm_self)  # (B, L, L)
        # padding steps of shorter answers in a batch are not part of their row's decoder: zero them,
        # or the cross rule's norm(R_dd)^T would carry them into real steps (batched != one by one)
        step = maps.step_mask.to(enc.dtype)  # (B, T)
        both = step[:, :, None] * step[:, None, :]
        dself = [a * both.to(a.dtype) for a in maps.dec_self]
        dcross = [a * step[:, :, None].to(a.dtype) for a in maps.dec_cross]
        dec = R.decoder_relevance(dself, dcross, enc)  # (B, T, L)
        return enc, dec

    def token_step_rows(self, enc_rel, dec_rel, batch, r):
        pos = torch.as_tensor(batch.token_positions[r], device=enc_rel.device, dtype=torch.long)
        T = len(batch.answers[r])
        return enc_rel[r].index_select(0, pos), dec_rel[r, :T]


class DecoderOnlyFamily(ModelFamily):
    """BLIP-2 with a decoder-only (OPT) language model."""

    def __init__(self, lm):
        super().__init__(lm)
        self._self = _Recorder([layer.self_attn for layer in self.model.language_model.model.decoder.layers], 1)

    def trace(self, batch: AttributionBatch, pixel_values: torch.Tensor | None = None, record: bool = True) -> Traced:
        dev = self.lm.device
        pv = batch.pixel_values if pixel_values is None else pixel_values
        seqs = [list(p) + list(a[:-1]) for p, a in zip(batch.prompt_ids, batch.answers)]
        ids, am = pad_ids(seqs, self.pad_id)
        labels, step_mask = self._answer_targets(batch.answers)
        groups = [self._qself, self._qcross, self._self] if record else []
        with _recording(groups):
            out = self.model(
                pixel_values=pv.to(dev, self.lm.dtype),
                input_ids=ids.to(dev),
                attention_mask=am.to(dev),
                return_dict=True,
            )
        logits = out.logits.double()
        if logits.shape[1] != ids.shape[1]:  # some versions return logits for the text positions only
            logits = logits[:, -ids.shape[1] :]
        logp_all = logits.log_softmax(-1)
        B, T = labels.shape
        logp = torch.zeros((B, T), device=dev, dtype=torch.float64)
        logit = torch.zeros((B, T), device=dev, dtype=out.logits.dtype)
        for r, (p, a) in enumerate(zip(batch.prompt_ids, batch.answers)):
            L = len(p)
            pos = torch.arange(L - 1, L - 1 + len(a), device=dev)
            logp[r, : len(a)] = logp_all[r, pos, torch.tensor(a, device=dev)]
            logit[r, : len(a)] = out.logits[:, -ids.shape[1] :][r, pos, torch.tensor(a, device=dev)]
        maps = lambda g: list(g.maps) if record else []  # noqa: E731
        return Traced(
            maps(self._qself), maps(self._qcross) if record else [], maps(self._self), [], [], logp, step_mask, logit
        )

    def lm_relevance(self, maps: Traced):
        return R.encoder_relevance(maps.lm_self), None  # causal self-attention: the same self rule

    def token_step_rows(self, enc_rel, dec_rel, batch, r):
        pos = torch.as_tensor(batch.token_positions[r], device=enc_rel.device, dtype=torch.long)
        L, T = len(batch.prompt_ids[r]), len(batch.answers[r])
        return enc_rel[r].index_select(0, pos), enc_rel[r, L - 1 : L - 1 + T]


def family_for(lm) -> ModelFamily:
    """The family class of a loaded BLIP-2 model (chosen once, from its language model)."""
    return EncoderDecoderFamily(lm) if lm.is_encoder_decoder else DecoderOnlyFamily(lm)
