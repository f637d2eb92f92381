"""The interface of a model family's passes (``ModelPasses``) and what one pass returns (``PassResult``).

A family implements it once per kind of language model (BLIP-2: ``stcg_model.families.blip2.passes``);
the engine, the curves and the attribution methods call only what is declared here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stcg_model.families.capture import LayerSelection
from stcg_model.families.inputs import Row, prompt_ids, question_positions, slot_positions
from stcg_model.families.loading import LoadedModel
from stcg_model.families.teacher_forcing import pad_ids
from stcg_model.families.traced import Traced


@dataclass
class PassResult:
    """Per-row outputs of one pass (row = one image variant), each a list over rows:
    ``C`` (Q, P) query -> region (CLS dropped, rows sum to 1); ``E`` (L, L) prompt self-attention;
    ``D`` (T, L) attention of each answer step over the prompt positions; ``step_logprob`` (T,) log p
    of each teacher-forced answer token; ``greedy`` the row's own greedy answer (token ids)."""

    C: list[np.ndarray]
    E: list[np.ndarray]
    D: list[np.ndarray]
    step_logprob: list[np.ndarray]
    greedy: list[list[int]]


class ModelPasses(ABC):
    """Batched passes of one loaded model. ``pixels`` turns images into on-device ``pixel_values`` (used when
    a call gets no ``pv``); ``min_new_tokens`` (default 0) bans ``</s>`` for the first steps of greedy
    decoding (benchmarks force answer lengths on random weights). A family sets the token facts the
    engine reads: ``Q`` (image slots in the prompt), ``image_token_id``, ``eos_id``, ``pad_id``, ``start_id``,
    and ``generator()``, the module whose ``generate`` decodes greedily from embeddings."""

    Q: int
    image_token_id: int
    eos_id: int
    pad_id: int
    start_id: int

    kind: str  # "encoder-decoder" | "decoder-only" (stored in the STCG's params)
    default_prompt: str  # the prompt template when none is given
    closes_prompt_with_eos: bool  # whether the prompt tokens end with </s>
    generated_prefix: int  # tokens of generate's output before the answer

    def __init__(
        self,
        lm: LoadedModel,
        layers: LayerSelection | None = None,
        max_new_tokens: int = 10,
        pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
    ):
        self.lm = lm
        self.model = lm.model
        self.layers = layers if layers is not None else LayerSelection()
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = 0
        self.pixels = pixels

    # ------------------------------------------------------------------ the interface
    @abstractmethod
    def run_pass(
        self, rows: Sequence[Row], answers: Sequence[list[int]] | None, per_example: int, pv: torch.Tensor | None = None
    ) -> PassResult:
        """Every row once through the model with attention captured; greedy answers of every row; each
        row's ``answers[r]`` teacher-forced (``None``: the greedy answer of its example's clean row, rows
        being ``per_example`` consecutive variants per example, clean first). ``pv`` (R, 3, H, W): the
        rows' pixel values when already made."""

    def answer_logprobs(
        self, rows: Sequence[Row], answers: Sequence[list[int]], pv: torch.Tensor | None = None
    ) -> list[np.ndarray]:
        """``logprobs`` of the rows' prompts and images (``pv``: their pixel values when already made)."""
        return self.logprobs([self.prompt_ids(ex) for ex, _ in rows], answers, self.pixel_values(rows, pv))

    @abstractmethod
    def logprobs(
        self, prompt_ids: Sequence[Sequence[int]], answers: Sequence[list[int]], pixel_values: torch.Tensor
    ) -> list[np.ndarray]:
        """Teacher-forced log p of ``answers[r]`` on row ``r``'s image and ``[image token x Q | prompt]`` ids,
        in ONE batched pass, no attention captured, no gradients: per row a float64 array (T_r,) =
        ``len(answers[r])`` of natural log probabilities of each answer token given the image, the prompt
        and the answer tokens before it; ``p(y | image) = exp(sum)``. The engine's curves and the
        perturbation-based methods (occlusion, scoring) both read it. Callers chunk long lists."""

    @abstractmethod
    def trace(
        self,
        prompt_ids: Sequence[Sequence[int]],
        answers: Sequence[list[int]],
        pixel_values: torch.Tensor,
    ) -> Traced:
        """The traced forward of the gradient methods: one teacher-forced pass of every row (its
        ``[image token x Q | prompt]`` ids) on its answer, every attention map on the path from the image
        to the answer recorded with heads kept and in the autograd graph (under ``torch.enable_grad``)."""

    def prompt_ids(self, ex) -> list[int]:
        """The language model's input ids of a prepared example: its prompt tokens with the ``Q`` image slots
        where the prompt holds the image placeholder, else in front (``families.inputs.prompt_ids``)."""
        return prompt_ids(ex, self.Q, self.image_token_id)

    def question_positions(self, ex) -> np.ndarray:
        """(n,) positions of the example's question tokens in ``prompt_ids(ex)``."""
        return question_positions(ex, self.Q, self.image_token_id)

    def slot_positions(self, ids) -> np.ndarray:
        """(Q,) positions of the image slots in language-model input ``ids`` (e.g. ``prompt_ids(ex)``)."""
        return slot_positions(ids, self.image_token_id)

    def prompt_inputs(self, rows: Sequence[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``prompt_ids`` (R, L) and attention mask (R, L), on the model's device (the input
        ids the model's own ``forward``/``generate`` take with ``pixel_values``)."""
        ids, am = pad_ids([self.prompt_ids(ex) for ex, _ in rows], self.pad_id)
        return ids.to(self.lm.device), am.to(self.lm.device)

    def image_kwargs(self, prompt_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """What the model's image path reads besides pixel values, for rows with these ``prompt_ids``
        (InstructBLIP: the Q-Former's text ids and mask); nothing by default."""
        return {}

    @abstractmethod
    def generator(self) -> torch.nn.Module:
        """The module whose ``generate`` decodes greedily from ``inputs_embeds`` or encoder outputs."""

    def banned_tokens(self) -> list[int]:
        """Token ids greedy decoding never emits (none by default)."""
        return []

    def greedy(self, **inputs) -> list[list[int]]:
        """Greedy answers (trimmed token ids) of ``generator().generate`` from ``inputs`` (encoder outputs
        or input embeddings, attention mask)."""
        banned = self.banned_tokens()
        if banned:
            inputs["suppress_tokens"] = banned
        gen = self.generator().generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            min_new_tokens=self.min_new_tokens or None,
            num_beams=1,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
        )
        return [self.trim_answer(seq[self.generated_prefix :].tolist()) for seq in gen]

    def trim_answer(self, ids: list[int]) -> list[int]:
        """Generated ids up to and including the first </s>; padding dropped; never empty."""
        out = []
        for t in ids:
            if t == self.pad_id and out:
                break
            out.append(int(t))
            if t == self.eos_id:
                break
        return out or [self.eos_id]

    def pixel_values(self, rows: Sequence[Row], pv: torch.Tensor | None = None) -> torch.Tensor:
        """(R, 3, H, W) pixel values of the rows' images on the model's device and dtype."""
        return self.pixels([a for _, a in rows]) if pv is None else pv.to(self.lm.device, self.lm.dtype)

    @staticmethod
    def clean_answers(greedy: list[list[int]], per_example: int) -> list[list[int]]:
        """Each row's teacher-forcing target: the greedy answer of its example's clean (first) row."""
        return [greedy[(r // per_example) * per_example] for r in range(len(greedy))]
