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
from stcg_model.families.decoder_only import SlotDecoderPasses
from stcg_model.families.inputs import TokenIds
from stcg_model.families.llava.points import llava_hook_points
from stcg_model.families.llava.slots import image_slots
from stcg_model.families.loading import LoadedModel

LLAVA_1_5_PROMPT = "USER: <image>\n{question} ASSISTANT:"


def _first(x) -> int | None:
    if isinstance(x, (list, tuple)):
        return int(x[0]) if x else None
    return None if x is None else int(x)


def token_ids(config, tokenizer) -> TokenIds:
    """The token facts of a LLaVA config and its tokenizer (module docstring)."""
    tc = config.text_config
    eos = _first(tc.eos_token_id)
    eos = eos if eos is not None else _first(getattr(tokenizer, "eos_token_id", None))
    pad = _first(tc.pad_token_id)
    pad = pad if pad is not None else _first(getattr(tokenizer, "pad_token_id", None))
    pad = pad if pad is not None else eos
    return TokenIds(image_slots(config), int(config.image_token_id), int(eos), int(pad), int(pad))


def chat_prompt(processor) -> str:
    """The prompt template (``{question}`` once) of the processor's chat template for one user turn with the
    image and the question, generation prompt added; LLaVA-1.5's when the processor has no template."""
    if getattr(processor, "chat_template", None):
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "{question}"}]}]
        text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        if isinstance(text, str) and text.count("{question}") == 1:
            return text
    return LLAVA_1_5_PROMPT


class LlavaPasses(SlotDecoderPasses):
    """``LlavaForConditionalGeneration``: slot ``k`` holds patch ``k``'s projected feature, so ``C`` is the identity."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ids = token_ids(self.model.config, self.lm.processor.tokenizer)
        self.Q, self.image_token_id = ids.Q, ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id
        self.default_prompt = chat_prompt(self.lm.processor)

    def hook_points(self) -> dict[str, HookPoint]:
        return llava_hook_points(self.model)

    def trace_points(self) -> dict[str, HookPoint]:
        return llava_hook_points(self.model)

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
