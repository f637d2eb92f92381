"""What a model family's traced forward returns (``ModelPasses.trace``): every attention map on the path
from the image to the answer, in layer order, with the answer's log-probabilities, for the gradient
methods and the relevancy chains (``stcg_model.attribution.methods.chains``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Traced:
    """The attention weights of one traced forward pass, ``(B, H, q, k)`` per layer, the answer's
    per-step log-probabilities ``logp`` (B, T, float64) and pre-softmax logits ``logit`` (B, T) of its
    tokens (both 0 beyond a row's answer). ``kind`` is the passes' kind of language model:
    ``"encoder-decoder"`` (``lm_self`` = encoder self-attention, ``dec_*`` filled) or ``"decoder-only"``
    (``lm_self`` = the causal self-attention over ``[prompt (with the image slots) | answer]``).
    ``qformer_*`` are empty for a family without a Q-Former (LLaVA: slot ``k`` is region ``k``);
    ``slots[r]`` (Q,) the positions of row ``r``'s image slots in its prompt (None: the first ``Q``)."""

    qformer_self: list[torch.Tensor]
    qformer_cross: list[torch.Tensor | None]  # None for a Q-Former layer without cross-attention
    lm_self: list[torch.Tensor]
    dec_self: list[torch.Tensor]  # T5 only
    dec_cross: list[torch.Tensor]  # T5 only
    logp: torch.Tensor
    step_mask: torch.Tensor  # (B, T) bool: which steps belong to each row's answer
    logit: torch.Tensor | None = None
    kind: str = "encoder-decoder"
    slots: list[np.ndarray] | None = None

    @property
    def has_qformer(self) -> bool:
        """Whether the image reaches the language model through a Q-Former (its maps are in the chain)."""
        return bool(self.qformer_self)

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
            self.kind,
            self.slots,
        )
