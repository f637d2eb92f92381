"""InstructBLIP's passes: BLIP-2's (``families.blip2.passes``: T5 or a causal language model such as Vicuna)
with the Q-Former reading the instruction beside its queries.

The instruction is the whole prompt with the question (``PreparedExample.prompt_text``), tokenised by the
processor's ``qformer_tokenizer`` as ``InstructBlipProcessor`` does. A row's language-model input
(``prompt_ids``) is a ``PromptIds``: the language model's ids, carrying the Q-Former's ids with them, so
every pass, ``logprobs`` and ``trace`` the attribution methods call on a row gets both. The default prompt is
InstructBLIP's short-answer VQA instruction, ``"Question: {question} Short answer:"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from stcg_model.families.blip2.passes import DecoderOnlyPasses, EncoderDecoderPasses
from stcg_model.families.capture import LayerSelection
from stcg_model.families.loading import LoadedModel
from stcg_model.families.passes import ModelPasses
from stcg_model.families.teacher_forcing import pad_ids

SHORT_ANSWER_PROMPT = "Question: {question} Short answer:"


class PromptIds(list):
    """A row's language-model input ids (a ``list[int]``) with the Q-Former's instruction ids, ``qformer_ids``."""

    def __init__(self, ids, qformer_ids):
        super().__init__(ids)
        self.qformer_ids = list(qformer_ids)

    def __reduce__(self):  # pickles (Ray) with its Q-Former ids
        return (PromptIds, (list(self), self.qformer_ids))


class QformerInstruction:
    """What InstructBLIP adds to BLIP-2's passes: the instruction's ids in each row's ``prompt_ids`` and,
    from them, the Q-Former's text inputs (``image_kwargs``)."""

    default_prompt = SHORT_ANSWER_PROMPT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.qformer_tokenizer = self.lm.processor.qformer_tokenizer
        self.qformer_pad_id = int(self.qformer_tokenizer.pad_token_id or 0)
        self._lock = threading.Lock()  # fast tokenizers must not be entered from two threads at once

    def qformer_ids(self, text: str) -> list[int]:
        """The Q-Former's ids of an instruction, as ``InstructBlipProcessor`` makes them."""
        with self._lock:
            return list(self.qformer_tokenizer(text, add_special_tokens=True, truncation=True)["input_ids"])

    def prompt_ids(self, ex) -> PromptIds:
        if not ex.prompt_text:
            raise ValueError("InstructBLIP reads the prompt's text: prepare examples with InputPreparer")
        return PromptIds(ModelPasses.prompt_ids(self, ex), self.qformer_ids(ex.prompt_text))

    def image_kwargs(self, prompt_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """``qformer_input_ids`` and ``qformer_attention_mask`` (R, n), right-padded, on the model's device."""
        missing = [i for i, p in enumerate(prompt_ids) if not isinstance(p, PromptIds)]
        if missing:
            raise ValueError(
                f"rows {missing} carry no Q-Former ids: InstructBLIP's rows take their ids from passes.prompt_ids(ex)"
            )
        ids, am = pad_ids([p.qformer_ids for p in prompt_ids], self.qformer_pad_id)
        return {"qformer_input_ids": ids.to(self.lm.device), "qformer_attention_mask": am.to(self.lm.device)}


class InstructBlipEncoderDecoderPasses(QformerInstruction, EncoderDecoderPasses):
    """``Salesforce/instructblip-flan-t5-*``: BLIP-2's T5 passes, the Q-Former reading the instruction."""


class InstructBlipDecoderOnlyPasses(QformerInstruction, DecoderOnlyPasses):
    """``Salesforce/instructblip-vicuna-*``: BLIP-2's decoder-only passes, the Q-Former reading the instruction."""


def passes_for(
    lm: LoadedModel,
    layers: LayerSelection | None = None,
    max_new_tokens: int = 10,
    pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
) -> ModelPasses:
    """The passes of ``lm``'s kind of language model (the defaults are enough for ``trace`` and ``logprobs``)."""
    cls = InstructBlipEncoderDecoderPasses if lm.is_encoder_decoder else InstructBlipDecoderOnlyPasses
    return cls(lm, layers, max_new_tokens, pixels)
