"""Qwen2-VL / Qwen2.5-VL passes: the family-blind decoder-only passes (``stcg_model.families.decoder_only``) with
the merged patch features in the image slots (``<|image_pad|>`` repeated ``Q`` times inside the chat template)
and multimodal rotary positions.

Qwen's language model places every token by three position indices (time, row, column; M-RoPE): text tokens
advance all three together, the image's ``G x G`` tokens share the time index and take their row and column.
The model computes them from the input ids and ``image_grid_thw`` (``get_rope_index``); every pass here gives
them explicitly (``position_ids``), because a pass on input embeddings, and ``generate`` on them, would
otherwise number the tokens as plain text. Slot ``k`` is merged block ``k`` in row-major order, so ``C`` is
the identity. Token facts: the image token of the config, end of turn (``<|im_end|>``, the text config's end
token) and padding of the tokenizer (``<|endoftext|>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from stcg_model.families.capture import HookPoint, LayerSelection
from stcg_model.families.decoder_only import SlotDecoderPasses, chat_prompt, language_model_points, token_ids
from stcg_model.families.loading import LoadedModel
from stcg_model.families.qwen_vl.pixels import grid_thw, image_side

QWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
)
"""Qwen-VL-Instruct's chat template for one image and a question (used when a processor has no template)."""


class QwenVLPasses(SlotDecoderPasses):
    """``Qwen2VLForConditionalGeneration`` and ``Qwen2_5_VLForConditionalGeneration`` (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.model.config
        ids = token_ids(cfg, self.lm.processor.tokenizer, slots=(image_side(cfg) // _unit(cfg)) ** 2)
        self.Q, self.image_token_id = ids.Q, ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id
        self.default_prompt = chat_prompt(self.lm.processor, QWEN_PROMPT)
        self.side = image_side(cfg)
        self.patch = int(cfg.vision_config.patch_size)

    def hook_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def trace_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def causal_lm(self) -> torch.nn.Module:
        return self.model  # with inputs_embeds, explicit positions and no pixels: its language model's forward

    def grid(self, rows: int) -> torch.Tensor:
        """(rows, 3) ``image_grid_thw``: one square image per row."""
        return grid_thw(torch.empty(rows, device=self.lm.device), self.side, self.patch)

    def image_features(self, pv, cap=None, prompt_ids=()):
        R = pv.shape[0]
        out = self.model.get_image_features(
            pixel_values=pv.reshape(-1, pv.shape[-1]), image_grid_thw=self.grid(R), return_dict=True
        )
        feats = torch.stack(list(out.pooler_output))  # (R, Q, d): one image per row, merged blocks row-major
        if cap is None:
            return feats, None
        eye = np.eye(self.Q, dtype=np.float32)
        return feats, [eye for _ in range(R)]

    def position_ids(self, ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
        """(3, R, N) M-RoPE positions of padded input ``ids`` (one image per row; padding at position 0)."""
        mm = (ids == self.image_token_id).long() * am.long()
        pos, _ = self.model.model.get_rope_index(
            input_ids=ids, mm_token_type_ids=mm, image_grid_thw=self.grid(ids.shape[0]), attention_mask=am
        )
        return pos

    def model_inputs(self, pixel_values: torch.Tensor, prompt_ids) -> dict[str, torch.Tensor]:
        pv = pixel_values.to(self.lm.device, self.lm.dtype)
        return {"pixel_values": pv.reshape(-1, pv.shape[-1]), "image_grid_thw": self.grid(pv.shape[0])}


def _unit(config) -> int:
    return int(config.vision_config.patch_size) * int(config.vision_config.spatial_merge_size)


def passes_for(
    lm: LoadedModel,
    layers: LayerSelection | None = None,
    max_new_tokens: int = 10,
    pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
) -> QwenVLPasses:
    """Qwen-VL's passes (the defaults are enough for ``trace`` and ``logprobs``, which take pixel values)."""
    return QwenVLPasses(lm, layers, max_new_tokens, pixels)
