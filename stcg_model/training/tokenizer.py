"""Word-level tokenizers built from data, and BLIP-2, InstructBLIP, LLaVA and Qwen-VL processors around them.

Used for the tiny test models and the embedded demo models. They save with ``save_pretrained`` and
load back through ``AutoTokenizer`` / ``AutoProcessor.from_pretrained`` like any checkpoint's.
Layout of the vocabulary: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, the words, ``<image>`` last; the
decoder-only flavour (LLaVA) has ``<s>`` 3 before the words, prepends it, appends nothing, and reads
``<image>`` in text as the one placeholder token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AddedToken, Blip2Processor, BlipImageProcessorPil, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "</s>", "<unk>"]
IMAGE_TOKEN = "<image>"
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """The pre-tokenisation the word-level tokenizer applies (lower-cased words and punctuation)."""
    return _WORD.findall(text.lower())


def build_word_tokenizer(texts: Iterable[str], causal: bool = False) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over every word in ``texts``; appends ``</s>`` like T5, or, with
    ``causal``, prepends ``<s>`` like Llama and keeps ``<image>`` in text as one token (LLaVA's prompts)."""
    vocab_words = sorted({w for t in texts for w in split_words(t)})
    specials = SPECIALS + ["<s>"] if causal else SPECIALS
    vocab = {tok: i for i, tok in enumerate(specials + vocab_words + [IMAGE_TOKEN])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[a-z0-9]+|[^\sa-z0-9]"), behavior="isolated")
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), tk.pre_tokenizer])
    if causal:
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
        )
        tk.add_special_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)])
    else:
        tk.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>" if causal else None,
        model_max_length=256 if causal else 128,
    )
    return tok


def build_qwen_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer in Qwen's layout: no BOS, ``<|endoftext|>`` 0 pads, ``<|im_end|>`` 1
    ends a turn (the end of an answer), ``<unk>`` 2, the words, then Qwen's special tokens (``QWEN_SPECIALS``)
    as one token each in text."""
    from stcg_model.families.qwen_vl.configs import QWEN_SPECIALS

    words = sorted({w for t in texts for w in split_words(t)})
    vocab = {tok: i for i, tok in enumerate(["<|endoftext|>", "<|im_end|>", "<unk>", *words, *QWEN_SPECIALS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[a-z0-9]+|[^\sa-z0-9]"), behavior="isolated")]
    )
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<|im_end|>", *QWEN_SPECIALS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<|endoftext|>", eos_token="<|im_end|>", unk_token="<unk>", model_max_length=1024
    )


def make_qwen_processor(tokenizer, version: str = "2.5", image_side: int = 112, min_side: int | None = None):
    """Qwen's processor (image half: ``families.qwen_vl.pixels``) with the PIL image processor (patch 14, merge 2)
    and Qwen-Instruct's chat template. Its pixel bounds are ``min_side^2 .. image_side^2`` (``min_side`` None:
    ``image_side``, so any image is resized to about ``image_side^2`` pixels)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from stcg_model.families.qwen_vl.configs import QWEN_CHAT_TEMPLATE
    from stcg_model.families.qwen_vl.pixels import Qwen2_5_VLImageProcessor, Qwen2VLImageProcessor

    px = image_side * image_side
    lo = px if min_side is None else min_side * min_side
    ip = Qwen2VLImageProcessorPil(
        size={"shortest_edge": lo, "longest_edge": px}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    cls = Qwen2_5_VLImageProcessor if version == "2.5" else Qwen2VLImageProcessor
    return cls(image_processor=ip, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)


def make_processor(
    tokenizer,
    image_size: int,
    num_query_tokens: int,
    image_mean=(0.48145466, 0.4578275, 0.40821073),
    image_std=(0.26862954, 0.26130258, 0.27577711),
) -> Blip2Processor:
    """A ``Blip2Processor`` that resizes to ``image_size`` square and inserts the query placeholders."""
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=list(image_mean),
        image_std=list(image_std),
        do_convert_rgb=True,
    )
    return Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens)


def make_instructblip_processor(tokenizer, qformer_tokenizer, image_size: int, num_query_tokens: int):
    """An ``InstructBlipProcessor``: ``make_processor``'s image processor and query placeholders, plus the
    Q-Former's tokenizer of the instruction."""
    from transformers import InstructBlipProcessor

    blip2 = make_processor(tokenizer, image_size, num_query_tokens)
    return InstructBlipProcessor(
        image_processor=blip2.image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=num_query_tokens,
    )


def make_llava_processor(
    tokenizer,
    image_size: int,
    patch_size: int,
    image_mean=(0.48145466, 0.4578275, 0.40821073),
    image_std=(0.26862954, 0.26130258, 0.27577711),
):
    """A ``LlavaProcessor``: CLIP's image processor resizing to ``image_size`` square (no crop, so the region
    grid covers the whole image), one ``<image>`` per patch, LLaVA-1.5's conversation as chat template."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    from stcg_model.families.llava.configs import LLAVA_CHAT_TEMPLATE

    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        image_mean=list(image_mean),
        image_std=list(image_std),
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
