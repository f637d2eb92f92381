"""Language-model configs several families build on (BLIP-2 and InstructBLIP share T5, LLaVA and InstructBLIP
Llama): the tiny ones of the tests and shipped models, and Flan-T5-XL at full size."""

from __future__ import annotations

from transformers import LlamaConfig, T5Config


def tiny_t5(vocab_size: int, hidden: int, layers: int, heads: int, pad_token_id: int, eos_token_id: int) -> T5Config:
    """A small T5 (encoder and decoder of ``layers`` each), decoder start = padding, untied head."""
    return T5Config(
        vocab_size=vocab_size,
        d_model=hidden,
        d_kv=hidden // heads,
        d_ff=2 * hidden,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        decoder_start_token_id=pad_token_id,
        tie_word_embeddings=False,
    )


def tiny_llama(
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    pad_token_id: int,
    eos_token_id: int,
    bos_token_id: int,
    max_positions: int = 256,
) -> LlamaConfig:
    """A small Llama (full multi-head attention), untied head."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )


def flan_t5_xl() -> T5Config:
    """Flan-T5-XL (``google/flan-t5-xl``): the language model of blip2-flan-t5-xl and instructblip-flan-t5-xl."""
    return T5Config(
        vocab_size=32128,
        d_model=2048,
        d_kv=64,
        d_ff=5120,
        num_layers=24,
        num_decoder_layers=24,
        num_heads=32,
        feed_forward_proj="gated-gelu",
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
