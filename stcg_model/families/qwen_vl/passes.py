"""Qwen2-VL / Qwen2.5-VL passes: the family-blind decoder-only passes (``stcg_model.families.decoder_only``) with
the merged patch features in the image slots (``<|image_pad|>`` repeated ``Q`` times inside the chat template)
and multimodal rotary positions.

Each example has its own region grid (``PreparedExample.grid``: ``rows x cols`` merged blocks, ``pixels``),
so its prompt holds ``Q = rows * cols`` image slots, and a row's ``prompt_ids`` is a ``GridPromptIds``: the
ids carrying the row's ``image_grid_thw`` ``(1, 2 rows, 2 cols)`` in patches. Every pass reads the grids
from there: which of a row's padded patches are real, how the vision tower cuts them, and the positions.
Rows of different grids share a batch: patches are zero-padded per row and un-padded before the vision
tower, the features of all rows are scattered into their slots in order, prompts are padded as for any
family.

Qwen's language model places every token by three position indices (time, row, column; M-RoPE): text tokens
advance all three together, the image's tokens share the time index and take their row and column.
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
from stcg_model.families.inputs import prompt_ids, question_positions
from stcg_model.families.loading import LoadedModel
from stcg_model.families.qwen_vl.pixels import fixed_side, unit

QWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
)
"""Qwen-VL-Instruct's chat template for one image and a question (used when a processor has no template)."""


class GridPromptIds(list):
    """A row's language-model input ids (a ``list[int]``) with its image's ``grid_thw`` ``(t, h, w)`` in patches."""

    def __init__(self, ids, grid_thw):
        super().__init__(ids)
        self.grid_thw = tuple(int(x) for x in grid_thw)

    def __reduce__(self):  # pickles (Ray) with its grid
        return (GridPromptIds, (list(self), self.grid_thw))


class QwenVLPasses(SlotDecoderPasses):
    """``Qwen2VLForConditionalGeneration`` and ``Qwen2_5_VLForConditionalGeneration`` (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.model.config
        side = fixed_side(cfg)
        self.merge = int(cfg.vision_config.spatial_merge_size)
        self.fixed_grid = None if side is None else side // unit(cfg)  # G of a fixed square grid, else None
        ids = token_ids(cfg, self.lm.processor.tokenizer, slots=(self.fixed_grid or 0) ** 2)
        self.Q = ids.Q if self.fixed_grid else None  # image slots vary per image
        self.image_token_id = ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id
        self.default_prompt = chat_prompt(self.lm.processor, QWEN_PROMPT)

    def hook_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def trace_points(self) -> dict[str, HookPoint]:
        return language_model_points(self.model)

    def causal_lm(self) -> torch.nn.Module:
        return self.model  # with inputs_embeds, explicit positions and no pixels: its language model's forward

    # ------------------------------------------------------------------ each example's grid
    def prompt_ids(self, ex) -> GridPromptIds:
        rows, cols = ex.grid.shape
        return GridPromptIds(
            prompt_ids(ex, rows * cols, self.image_token_id), (1, rows * self.merge, cols * self.merge)
        )

    def question_positions(self, ex) -> np.ndarray:
        return question_positions(ex, ex.grid.num_regions, self.image_token_id)

    def grids(self, prompt_ids: Sequence[Sequence[int]], rows: int) -> torch.Tensor:
        """(rows, 3) ``image_grid_thw`` of the rows: from their ``GridPromptIds``, or the fixed square grid."""
        if len(prompt_ids) == rows and all(isinstance(p, GridPromptIds) for p in prompt_ids):
            thw = [p.grid_thw for p in prompt_ids]
        elif self.fixed_grid is not None:
            thw = [(1, self.fixed_grid * self.merge, self.fixed_grid * self.merge)] * rows
        else:
            raise ValueError(
                "Qwen-VL rows at their own resolution carry their grid: take ids from passes.prompt_ids(ex)"
            )
        return torch.tensor(thw, dtype=torch.long, device=self.lm.device)

    @staticmethod
    def patches(pv: torch.Tensor, thw: torch.Tensor) -> torch.Tensor:
        """(sum_r t h w, D) the rows' real patches, concatenated, from padded ``pv`` (R, n_max, D)."""
        n = thw.prod(-1).tolist()
        if all(k == pv.shape[1] for k in n):
            return pv.reshape(-1, pv.shape[-1])
        return torch.cat([pv[r, :k] for r, k in enumerate(n)])

    def image_features(self, pv, cap=None, prompt_ids=()):
        """``(feats (sum_r Q_r, d), C)``: every row's merged blocks (row-major), in slot order, and per row
        ``C`` the identity (Q_r, Q_r)."""
        thw = self.grids(prompt_ids, pv.shape[0])
        out = self.model.get_image_features(pixel_values=self.patches(pv, thw), image_grid_thw=thw, return_dict=True)
        feats = torch.cat(list(out.pooler_output))
        if cap is None:
            return feats, None
        return feats, [np.eye(f.shape[0], dtype=np.float32) for f in out.pooler_output]

    def position_ids(self, ids: torch.Tensor, am: torch.Tensor, prompt_ids=()) -> torch.Tensor:
        """(3, R, N) M-RoPE positions of padded input ``ids`` (one image per row; padding at position 0)."""
        mm = (ids == self.image_token_id).long() * am.long()
        pos, _ = self.model.model.get_rope_index(
            input_ids=ids, mm_token_type_ids=mm, image_grid_thw=self.grids(prompt_ids, ids.shape[0]), attention_mask=am
        )
        return pos

    def model_inputs(self, pixel_values: torch.Tensor, prompt_ids) -> dict[str, torch.Tensor]:
        pv = pixel_values.to(self.lm.device, self.lm.dtype)
        thw = self.grids(prompt_ids, pv.shape[0])
        return {"pixel_values": self.patches(pv, thw), "image_grid_thw": thw}


def passes_for(
    lm: LoadedModel,
    layers: LayerSelection | None = None,
    max_new_tokens: int = 10,
    pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
) -> QwenVLPasses:
    """Qwen-VL's passes (the defaults are enough for ``trace`` and ``logprobs``, which take pixel values)."""
    return QwenVLPasses(lm, layers, max_new_tokens, pixels)
