"""LLaVA's passes: the family-blind decoder-only passes (``stcg_model.families.decoder_only``) with the
projected patch features in the image slots, where the chat template puts ``<image>``.

Token facts come from the config and the tokenizer: ``Q = P`` slots (CLS dropped), the image token of
the config, end of sequence of the language model (the first, where a config lists several), padding
of the tokenizer (else the end token). The default prompt is the processor's chat template applied to
one user turn holding the image and the question (``chat_prompt``); a checkpoint without a template gets
LLaVA-1.5's ``"USER: <image>\\n{question} ASSISTANT:"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from stcg_model.families.capture import HookPoint, LayerSelection
from stcg_model.families.decoder_only import SlotDecoderPasses, chat_prompt, language_model_points, token_ids
from stcg_model.families.llava.slots import image_slots
from stcg_model.families.loading import LoadedModel

LLAVA_1_5_PROMPT = "USER: <image>\n{question} ASSISTANT:"


class LlavaPasses(SlotDecoderPasses):
    """``LlavaForConditionalGeneration``: slot ``k`` holds patch ``k``'s projected feature, so ``C`` is the identity."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ids = token_ids(self.model.config, self.lm.processor.tokenizer, image_slots(self.model.config))
        self.Q, self.image_token_id = ids.Q, ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id
        self.default_prompt = chat_prompt(self.lm.processor, LLAVA_1_5_PROMPT)

    def hook_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def trace_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def causal_lm(self) -> torch.nn.Module:
        return self.model  # with inputs_embeds and no pixel values, LLaVA's forward is its language model's

    def image_features(self, pv, cap=None, prompt_ids=()):
        feats = torch.stack(list(self.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output))
        if cap is None:
            return feats, None
        eye = np.eye(self.Q, dtype=np.float32)
        return feats, [eye for _ in range(feats.shape[0])]


def passes_for(
    lm: LoadedModel,
    layers: LayerSelection | None = None,
    max_new_tokens: int = 10,
    pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
) -> LlavaPasses:
    """LLaVA's passes (the defaults are enough for ``trace`` and ``logprobs``, which take pixel values)."""
    return LlavaPasses(lm, layers, max_new_tokens, pixels)
