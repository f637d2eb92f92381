"""Tiny random BLIP-2, InstructBLIP, LLaVA and Qwen-VL models for tests: the real classes (``families.blip2.configs``) with a word-level
tokenizer and processor (``training.tokenizer``), loaded like any checkpoint."""

from __future__ import annotations

from stcg_model.families.blip2.configs import blip2_config, build_model, flan_t5_xl_config, init_query_tokens
from stcg_model.training.tokenizer import (
    build_qwen_tokenizer,
    build_word_tokenizer,
    make_instructblip_processor,
    make_llava_processor,
    make_processor,
    make_qwen_processor,
)

__all__ = [
    "TINY_TEXTS",
    "blip2_config",
    "build_model",
    "flan_t5_xl_config",
    "init_query_tokens",
    "tiny_blip2",
    "tiny_instructblip",
    "tiny_llava",
    "tiny_qwen_vl",
]

TINY_TEXTS = (
    "what color is the shape ? what shape is in the image ? is there a red circle ? "
    "is the triangle blue ? does the image contain a green rectangle ? "
    "red green blue yellow gray teal brown black white circle triangle rectangle yes no not"
)


def tiny_blip2(
    lm: str = "t5",
    texts=(TINY_TEXTS,),
    image_size: int = 32,
    patch_size: int = 8,
    num_query_tokens: int = 4,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    **kw,
):
    """A tiny random BLIP-2 with a word-level tokenizer and processor, as a ``LoadedModel``."""
    from stcg_model.families.blip2.loading import prepare

    tok = build_word_tokenizer(texts)
    image_token_id = tok.convert_tokens_to_ids("<image>")
    cfg = blip2_config(
        lm=lm,
        vocab_size=len(tok),
        image_token_id=image_token_id,
        image_size=image_size,
        patch_size=patch_size,
        num_query_tokens=num_query_tokens,
        **kw,
    )
    model = build_model(cfg, seed=seed)
    processor = make_processor(tok, image_size, num_query_tokens)
    return prepare(model, processor, name=f"tiny-{lm}-random", device=device, dtype=dtype)


def tiny_instructblip(
    lm: str = "t5",
    texts=(TINY_TEXTS,),
    image_size: int = 32,
    patch_size: int = 8,
    num_query_tokens: int = 4,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    **kw,
):
    """A tiny random InstructBLIP (T5 or Llama language model) with word-level tokenizers for the language
    model and the Q-Former, as a ``LoadedModel``."""
    from stcg_model.families.instructblip.configs import build_model as build_instructblip
    from stcg_model.families.instructblip.configs import instructblip_config
    from stcg_model.families.instructblip.loading import prepare

    tok = build_word_tokenizer(texts, causal=lm == "llama")
    qtok = build_word_tokenizer(texts)
    cfg = instructblip_config(
        lm=lm,
        vocab_size=len(tok),
        qformer_vocab_size=len(qtok),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_size=image_size,
        patch_size=patch_size,
        num_query_tokens=num_query_tokens,
        bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else 3,
        **kw,
    )
    model = build_instructblip(cfg, seed=seed)
    processor = make_instructblip_processor(tok, qtok, image_size, num_query_tokens)
    return prepare(model, processor, name=f"tiny-instructblip-{lm}-random", device=device, dtype=dtype)


def tiny_llava(
    texts=(TINY_TEXTS,),
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    **kw,
):
    """A tiny random LLaVA (CLIP + Llama) with a word-level tokenizer and LLaVA processor, as a ``LoadedModel``
    (``vip=True`` in ``kw``: a VipLlava, the features of the last two vision layers concatenated)."""
    from stcg_model.families.llava.configs import build_model as build_llava
    from stcg_model.families.llava.configs import llava_config
    from stcg_model.families.llava.loading import prepare

    tok = build_word_tokenizer(texts, causal=True)
    cfg = llava_config(
        vocab_size=len(tok),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_size=image_size,
        patch_size=patch_size,
        bos_token_id=tok.bos_token_id,
        **kw,
    )
    model = build_llava(cfg, seed=seed)
    processor = make_llava_processor(tok, image_size, patch_size)
    name = "tiny-vipllava-random" if kw.get("vip") else "tiny-llava-random"
    return prepare(model, processor, name=name, device=device, dtype=dtype)


def tiny_qwen_vl(
    version: str = "2.5",
    texts=(TINY_TEXTS,),
    image_side: int = 112,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    native: bool = False,
    min_side: int = 56,
    **kw,
):
    """A tiny random Qwen2.5-VL (``version="2.5"``) or Qwen2-VL (``"2"``) with a word-level tokenizer holding
    Qwen's special tokens, Qwen-Instruct's chat template and images at ``image_side`` pixels, as a ``LoadedModel``;
    ``native``: each image at its own resolution instead (the processor's bounds ``min_side``^2 .. ``image_side``^2
    pixels: grids from about ``min_side / 28`` to ``image_side / 28`` blocks a side)."""
    from stcg_model.families.qwen_vl.configs import build_model as build_qwen
    from stcg_model.families.qwen_vl.configs import qwen_vl_config
    from stcg_model.families.qwen_vl.loading import prepare

    tok = build_qwen_tokenizer([*texts, "you are a helpful assistant . system user"])
    ids = {
        name: tok.convert_tokens_to_ids(t)
        for name, t in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    cfg = qwen_vl_config(
        version,
        vocab_size=len(tok),
        token_ids=ids,
        image_side=None if native else image_side,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        **kw,
    )
    model = build_qwen(cfg, seed=seed)
    processor = make_qwen_processor(tok, version, image_side, min_side=min_side if native else None)
    return prepare(model, processor, name=f"tiny-qwen{version}-vl-random", device=device, dtype=dtype)
