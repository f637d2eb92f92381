"""InstructBLIP architectures built from config: the tiny ones of the tests, and full size
(``Salesforce/instructblip-flan-t5-xl``, ``Salesforce/instructblip-vicuna-7b``) for benchmarks with random
weights. All use the real ``InstructBlipForConditionalGeneration`` class; the vision tower's and the query
tokens' transformers 5.x defaults are fixed as for BLIP-2 (``families.blip2.configs``)."""

from __future__ import annotations

import torch
from transformers import (
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
)

from stcg_model.families.blip2.configs import init_query_tokens
from stcg_model.families.text_configs import flan_t5_xl, tiny_llama, tiny_t5


def instructblip_config(
    lm: str = "t5",
    vocab_size: int = 64,
    qformer_vocab_size: int = 64,
    image_token_id: int | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    num_query_tokens: int = 4,
    hidden: int = 32,
    layers: int = 2,
    qformer_layers: int = 2,
    cross_attention_frequency: int = 1,
    heads: int = 4,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
    bos_token_id: int = 3,
) -> InstructBlipConfig:
    """A small InstructBLIP config with a T5 (``lm="t5"``) or Llama (``"llama"``, Vicuna's class) language
    model; ``image_size // patch_size`` is the region grid side."""
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    vision = InstructBlipVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    qformer = InstructBlipQFormerConfig(
        vocab_size=qformer_vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=qformer_layers,
        num_attention_heads=heads,
        cross_attention_frequency=cross_attention_frequency,
        encoder_hidden_size=hidden,
        max_position_embeddings=128,
    )
    if lm == "t5":
        text = tiny_t5(vocab_size, hidden, layers, heads, pad_token_id, eos_token_id)
    elif lm == "llama":
        text = tiny_llama(vocab_size, hidden, layers, heads, pad_token_id, eos_token_id, bos_token_id)
    else:
        raise ValueError(f"unknown language model kind {lm!r} (t5 or llama)")
    cfg = InstructBlipConfig(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=vocab_size - 1 if image_token_id is None else image_token_id,
    )
    cfg.architectures = ["InstructBlipForConditionalGeneration"]
    return cfg


def build_model(config: InstructBlipConfig, seed: int = 0) -> InstructBlipForConditionalGeneration:
    """A randomly initialised model in eval mode with usable query tokens."""
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(config)
    init_query_tokens(model, seed)
    return model.eval()


def _full_size(text, image_token_id: int) -> InstructBlipConfig:
    cfg = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(initializer_range=0.02).to_dict(),  # ViT-g 224/14
        qformer_config=InstructBlipQFormerConfig().to_dict(),  # BERT-base, cross-attention every 2nd layer
        text_config=text.to_dict(),
        num_query_tokens=32,
        image_token_index=image_token_id,
    )
    cfg.architectures = ["InstructBlipForConditionalGeneration"]
    return cfg


def instructblip_flan_t5_xl_config() -> InstructBlipConfig:
    """The architecture of ``Salesforce/instructblip-flan-t5-xl`` (ViT-g, 32 queries, Flan-T5-XL)."""
    t5 = flan_t5_xl()
    return _full_size(t5, 32100)


def instructblip_vicuna_7b_config() -> InstructBlipConfig:
    """The architecture of ``Salesforce/instructblip-vicuna-7b`` (ViT-g, 32 queries, Vicuna-7B = Llama)."""
    llama = LlamaConfig(
        vocab_size=32001,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return _full_size(llama, 32000)
