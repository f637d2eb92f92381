"""LLaVA architectures built from config: the tiny ones of the tests and the scenes model, and full size
(``llava-hf/llava-1.5-7b-hf``) for GPU benchmarks with random weights. All use the real
``LlavaForConditionalGeneration`` class (CLIP vision tower, Llama language model), with a word-level
tokenizer whose ``<image>`` is one special token and a chat template in LLaVA-1.5's format."""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    VipLlavaConfig,
    VipLlavaForConditionalGeneration,
)

from stcg_model.families.text_configs import tiny_llama

LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% elif m['role'] == 'assistant' %}ASSISTANT: {% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
"""LLaVA-1.5's conversation format (``USER: <image>\\n{question} ASSISTANT:``) as a chat template."""


def llava_config(
    vocab_size: int,
    image_token_id: int,
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 2,
    vision_layers: int = 2,
    heads: int = 4,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
    bos_token_id: int = 3,
    max_positions: int = 256,
    vision_feature_layer: int | list[int] = -2,
    vip: bool = False,
) -> LlavaConfig | VipLlavaConfig:
    """A small LLaVA config; ``image_size // patch_size`` is the region grid side (one slot per patch). ``vip``:
    a VipLlava config instead (``VipLlavaForConditionalGeneration``: the patch features of several vision
    layers, ``vision_feature_layer`` a list, concatenated and projected through a layer norm and an MLP)."""
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden,
    )
    text = tiny_llama(vocab_size, hidden, layers, heads, pad_token_id, eos_token_id, bos_token_id, max_positions)
    if vip:
        cfg = VipLlavaConfig(
            vision_config=vision.to_dict(),
            text_config=text.to_dict(),
            image_token_id=image_token_id,
            projector_hidden_act="gelu",
            vision_feature_layer=vision_feature_layer if isinstance(vision_feature_layer, list) else [-2, -1],
            image_seq_length=(image_size // patch_size) ** 2,
        )
        cfg.architectures = ["VipLlavaForConditionalGeneration"]
        return cfg
    cfg = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=vision_feature_layer,
        image_seq_length=(image_size // patch_size) ** 2,
    )
    cfg.architectures = ["LlavaForConditionalGeneration"]
    return cfg


def model_class(config) -> type:
    """The conditional-generation class of a LLaVA-family config (LLaVA or VipLlava)."""
    return VipLlavaForConditionalGeneration if config.model_type == "vipllava" else LlavaForConditionalGeneration


def build_model(config: LlavaConfig | VipLlavaConfig, seed: int = 0):
    """A randomly initialised model in eval mode."""
    torch.manual_seed(seed)
    return model_class(config)(config).eval()


def llava_1_5_7b_config() -> LlavaConfig:
    """The architecture of ``llava-hf/llava-1.5-7b-hf`` (CLIP ViT-L/14 at 336 px: 576 slots; Llama-2-7B)."""
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        pad_token_id=32001,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=32000,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=576,
    )
    cfg.architectures = ["LlavaForConditionalGeneration"]
    return cfg
