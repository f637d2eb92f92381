"""Qwen2-VL / Qwen2.5-VL architectures built from config: the tiny ones of the tests, and full size
(``Qwen/Qwen2.5-VL-7B-Instruct``) for benchmarks with random weights, with the real transformers classes.
``QWEN_CHAT_TEMPLATE`` is the released Instruct checkpoints' chat template (images and text; video dropped)."""

from __future__ import annotations

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

QWEN_SPECIALS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>")
"""The special tokens of Qwen's prompts besides padding (``<|endoftext|>``) and end of turn (``<|im_end|>``)."""

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2-VL-Instruct's chat template for images: a default system turn, ``<|vision_start|><|image_pad|>
<|vision_end|>`` where the image goes, ``<|im_start|>assistant\\n`` as the generation prompt."""


def qwen_vl_config(
    version: str = "2.5",
    vocab_size: int = 64,
    token_ids: dict | None = None,
    image_side: int | None = 112,
    hidden: int = 64,
    layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
):
    """A small Qwen2.5-VL (``version="2.5"``) or Qwen2-VL (``"2"``) config: patch 14, 2 x 2 merge, images at
    ``image_side`` pixels (``stcg_image_side``: ``(image_side / 28)^2`` image tokens), or, with ``image_side``
    None, each image at its own resolution (as the released checkpoints' configs). ``token_ids`` holds
    ``image_token_id``, ``video_token_id``, ``vision_start_token_id``, ``vision_end_token_id``."""
    head_dim = hidden // heads
    if head_dim % 2 or (image_side or 0) % 28:
        raise ValueError("hidden // heads must be even and image_side a multiple of 28")
    half = head_dim // 2  # M-RoPE splits the rotary half of each head over (t, h, w)
    text = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [half - 2 * ((half - half // 4) // 2), *[(half - half // 4) // 2] * 2],
        },
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    common = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, num_heads=2)
    if version == "2.5":
        vision = dict(
            depth=vision_layers,
            hidden_size=vision_hidden,
            intermediate_size=2 * vision_hidden,
            out_hidden_size=hidden,
            window_size=56,
            fullatt_block_indexes=[vision_layers - 1],
            tokens_per_second=2,
            **common,
        )
        cfg = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **(token_ids or {}))
        cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    elif version == "2":
        vision = dict(depth=vision_layers, embed_dim=vision_hidden, hidden_size=hidden, mlp_ratio=2, **common)
        cfg = Qwen2VLConfig(vision_config=vision, text_config=text, **(token_ids or {}))
        cfg.architectures = ["Qwen2VLForConditionalGeneration"]
    else:
        raise ValueError(f"unknown Qwen-VL version {version!r} (2 or 2.5)")
    if image_side is not None:
        cfg.stcg_image_side = image_side
    return cfg


def model_class(config) -> type:
    """The conditional-generation class of a Qwen-VL config."""
    return Qwen2_5_VLForConditionalGeneration if config.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration


def build_model(config, seed: int = 0):
    """A randomly initialised model in eval mode."""
    torch.manual_seed(seed)
    return model_class(config)(config).eval()


def qwen2_5_vl_7b_config() -> Qwen2_5_VLConfig:
    """The architecture of ``Qwen/Qwen2.5-VL-7B-Instruct`` (32-layer windowed ViT, Qwen2-7B language model)."""
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=3584,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )
    text = dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=128000,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        tie_word_embeddings=False,
    )
    cfg = Qwen2_5_VLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
    )
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg
