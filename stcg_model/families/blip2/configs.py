"""BLIP-2 architectures built from config: the tiny ones of the demo models and tests, and full size
(``Salesforce/blip2-flan-t5-xl``) for GPU benchmarks with random weights.

All use the real ``Blip2ForConditionalGeneration`` class. Two transformers 5.x defaults make a
model built from config useless and are fixed here (docs/spec.md section 1): ``query_tokens`` start
at zero (every query identical) and the vision tower's ``initializer_range`` is 1e-10.
"""

from __future__ import annotations

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    OPTConfig,
)

from stcg_model.families.text_configs import flan_t5_xl, tiny_t5


def init_query_tokens(model: Blip2ForConditionalGeneration, seed: int | None = None) -> None:
    """Normal(0, initializer_range) query tokens (transformers 5.x leaves them at zero)."""
    std = model.config.initializer_range
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        q = torch.randn(model.query_tokens.shape, generator=gen) * std
        model.query_tokens.copy_(q.to(model.query_tokens.dtype))


def blip2_config(
    lm: str = "t5",
    vocab_size: int = 64,
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
) -> Blip2Config:
    """A small BLIP-2 config; ``image_size // patch_size`` is the region grid side."""
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    vision = Blip2VisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=qformer_layers,
        num_attention_heads=heads,
        cross_attention_frequency=cross_attention_frequency,
        encoder_hidden_size=hidden,
        vocab_size=vocab_size,
    )
    if lm == "t5":
        text = tiny_t5(vocab_size, hidden, layers, heads, pad_token_id, eos_token_id)
    elif lm == "opt":
        text = OPTConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            ffn_dim=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            word_embed_proj_dim=hidden,
            max_position_embeddings=128,
            pad_token_id=pad_token_id,
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
        )
    else:
        raise ValueError(f"unknown language model kind {lm!r} (t5 or opt)")
    cfg = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_id=vocab_size - 1 if image_token_id is None else image_token_id,
    )
    cfg._attn_implementation = "eager"
    return cfg


def build_model(config: Blip2Config, seed: int = 0) -> Blip2ForConditionalGeneration:
    """A randomly initialised model in eval mode with usable query tokens."""
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    init_query_tokens(model, seed)
    return model.eval()


def flan_t5_xl_config() -> Blip2Config:
    """The architecture of ``Salesforce/blip2-flan-t5-xl`` (ViT-g 224/14, 32 queries, Flan-T5-XL)."""
    t5 = flan_t5_xl()
    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(initializer_range=0.02).to_dict(),
        qformer_config=Blip2QFormerConfig().to_dict(),
        text_config=t5.to_dict(),
        num_query_tokens=32,
        image_token_id=32100,
    )
    cfg._attn_implementation = "eager"
    return cfg
