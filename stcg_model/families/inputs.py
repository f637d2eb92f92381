"""Input preparation: a ``VQAInput`` -> the ``PreparedExample`` the model passes read.

Preparing an example is host (CPU) work with no model: the image as an 8-bit RGB array
(perturbations run on it, as the processor sees it), the prompt tokenised with character offsets,
and which prompt tokens are the question's (the STCG's ``Token`` nodes).

Where the image goes in the language model's input is the prompt's business: a prompt whose tokens hold
the image placeholder (LLaVA's ``"USER: <image>\n{question} ASSISTANT:"``) gets its ``Q`` image slots
there, one placeholder id per slot; any other prompt gets them in front (BLIP-2: ``[Q query slots |
prompt tokens]``). ``prompt_ids``, ``question_positions`` and ``slot_positions`` say where everything is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from stcg.errors import StcgError
from stcg_model.maths.regions import RegionGrid


@dataclass
class VQAInput:
    """One question about one image. ``meta`` travels into ``STCGraph.meta`` unchanged."""

    example_id: str
    image: Image.Image
    question: str
    meta: dict = field(default_factory=dict)
    mask: np.ndarray | None = None  # (H, W) bool: the answer's evidence on ``image`` (ground truth), if known


@dataclass
class PreparedExample:
    """A ``VQAInput`` ready for the model passes (``InputPreparer.prepare``)."""

    ex: VQAInput
    pixels: np.ndarray  # (H, W, 3) uint8 RGB (perturbations run on 8-bit images, as the processor sees them)
    grid: RegionGrid
    token_ids: list[int]  # the whole prompt after the query slots (e.g. question tokens + </s>)
    offsets: list[tuple[int, int]]  # character spans in the question ((0, 0) outside it)
    q_index: np.ndarray  # which of token_ids are question tokens (the STCG's Token nodes)
    original_size: tuple[int, int]  # (width, height) before any downscaling
    prompt_text: str = ""  # the prompt with the question, as tokenised (InstructBLIP's Q-Former reads it too)


Row = tuple[PreparedExample, np.ndarray]
"""One image variant of an example: ``(prepared example, (h, w, 3) uint8 image)``."""


@dataclass
class HostBatch:
    """The host-side (CPU) work of one batch, done before the model needs it (``STCGEngine.prepare_batch``)."""

    examples: list
    prepared: list[PreparedExample]
    rows: list[Row]  # pass-1 rows: clean + plain perturbations per example
    pixel_values: torch.Tensor  # (rows, 3, H, W) on the CPU, processor output


@dataclass(frozen=True)
class TokenIds:
    """The token facts a family's passes read: ``Q`` image slots, the image placeholder, end, padding and
    decoder start (the padding id when the model has no start token: OPT, LLaVA). ``of`` reads them from
    a BLIP-2 config; LLaVA's come from ``families.llava.passes.token_ids``."""

    Q: int
    image_token_id: int
    eos_id: int
    pad_id: int
    start_id: int

    @classmethod
    def of(cls, config) -> TokenIds:
        tc = config.text_config
        eos = int(tc.eos_token_id)
        pad = int(tc.pad_token_id if tc.pad_token_id is not None else tc.eos_token_id)
        start = getattr(tc, "decoder_start_token_id", None)
        return cls(
            int(config.num_query_tokens), int(config.image_token_id), eos, pad, int(start) if start is not None else pad
        )


def check_prompt(prompt: str) -> str:
    """The prompt template, or a one-line ``StcgError`` when it lacks exactly one ``{question}``."""
    if prompt.count("{question}") != 1:
        raise StcgError(f"the prompt must contain {{question}} exactly once, got {prompt!r}")
    return prompt


def placeholder_index(token_ids: list[int], image_token_id: int | None) -> int | None:
    """Where the prompt's tokens hold the image placeholder (its first occurrence), or None (none there)."""
    if image_token_id is None or image_token_id not in token_ids:
        return None
    return token_ids.index(image_token_id)


def prompt_ids(ex: PreparedExample, num_query_tokens: int, image_token_id: int) -> list[int]:
    """The language model's input ids: the prompt tokens with the placeholder repeated ``Q`` times where the
    prompt has it, else ``[image token x Q | prompt tokens]`` (the slots get the image features)."""
    k = placeholder_index(ex.token_ids, image_token_id)
    if k is None:
        return [image_token_id] * num_query_tokens + ex.token_ids
    return ex.token_ids[:k] + [image_token_id] * num_query_tokens + ex.token_ids[k + 1 :]


def question_positions(ex: PreparedExample, num_query_tokens: int, image_token_id: int | None = None) -> np.ndarray:
    """(n,) positions of the question tokens in ``prompt_ids`` (</s>, BOS and prompt words excluded)."""
    k = placeholder_index(ex.token_ids, image_token_id)
    if k is None:
        return num_query_tokens + ex.q_index
    return np.where(ex.q_index > k, ex.q_index + num_query_tokens - 1, ex.q_index)


def slot_positions(ids, image_token_id: int) -> np.ndarray:
    """(Q,) positions of the image slots in a language-model input ``ids`` (``prompt_ids``; padding excluded)."""
    return np.flatnonzero(np.asarray(ids) == image_token_id)


def question_token_strings(tokenizer, ex: PreparedExample) -> list[str]:
    """The question tokens as shown (SentencePiece / byte-level space markers removed)."""
    ids = [ex.token_ids[i] for i in ex.q_index]
    return [t.replace("\u2581", "").replace("\u0120", "") or t for t in tokenizer.convert_ids_to_tokens(ids)]


def answer_token_strings(tokenizer, answer: list[int]) -> list[str]:
    """Each answer step's token as shown (``</s>`` kept); an id the tokenizer does not have (a model whose
    embedding table is padded past its vocabulary, as llava-1.5's is) shows as ``<id N>``."""
    tokens = tokenizer.convert_ids_to_tokens(answer)
    return [f"<id {i}>" if t is None else (t.replace("\u2581", "") or t) for i, t in zip(answer, tokens)]


def decode_answer(tokenizer, answer: list[int], eos_id: int) -> str:
    """The answer's text (``</s>`` and special tokens dropped, stripped)."""
    return tokenizer.decode([t for t in answer if t != eos_id], skip_special_tokens=True).strip()


def downscaled(image: Image.Image, max_side: int) -> Image.Image:
    """``image``, or a copy whose longer side is ``max_side`` pixels when it is longer (bilinear): what the
    perturbations run on and the processor sees (BLIP-2 sees 224 px; Qwen-VL's grid follows this size)."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    s = max_side / max(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)


MAX_SIDE = 1024
"""``InputPreparer``'s default ``max_side``."""


class InputPreparer:
    """``VQAInput`` -> ``PreparedExample``; safe to call from several threads (the tokenizer is locked).

    ``prompt`` wraps the question (``{question}`` once); ``closing_eos_id`` is appended to the prompt
    tokens when they do not end with it (T5 encoders expect a closing ``</s>``; ``None``: nothing).
    Images longer than ``max_side`` pixels are downscaled before perturbation (boxes stay in the
    original pixels). Every image gets a ``grid_side x grid_side`` region grid, unless ``grid_shape``
    ((width, height) of the image as perturbed -> (rows, cols)) gives each its own (Qwen-VL at its own
    resolution; ``grid_side`` is then None)."""

    def __init__(
        self,
        tokenizer,
        prompt: str,
        num_query_tokens: int | None,
        image_token_id: int,
        grid_side: int | None,
        closing_eos_id: int | None,
        max_side: int = MAX_SIDE,
        grid_shape: Callable[[int, int], tuple[int, int]] | None = None,
    ):
        if grid_side is None and grid_shape is None:
            raise ValueError("InputPreparer needs a grid_side or a grid_shape")
        self.tokenizer = tokenizer
        self.prompt = check_prompt(prompt)
        self.Q = num_query_tokens
        self.image_token_id = image_token_id
        self.grid_side = grid_side
        self.grid_shape = grid_shape
        self.closing_eos_id = closing_eos_id
        self.max_side = max_side
        self._lock = threading.Lock()

    def prepare(self, ex: VQAInput) -> PreparedExample:
        orig = ex.image.size
        image = downscaled(ex.image, self.max_side)
        pixels = np.array(image.convert("RGB"), dtype=np.uint8)  # writable (PIL arrays are read-only)
        h, w = pixels.shape[:2]
        ids, spans, q0, q1 = self.tokenize(ex.question)
        # a question token is one whose character span overlaps the question (a BPE token may carry
        # the space before it); BOS/EOS (empty spans) and the prompt's own words are context only
        clamped = [(max(s, q0), min(e, q1)) for s, e in spans]
        inside = [t != self.image_token_id and e > s for t, (s, e) in zip(ids, clamped)]
        offsets = [(s - q0, e - q0) if k else (0, 0) for k, (s, e) in zip(inside, clamped)]
        q_index = np.flatnonzero(inside)
        text = self.prompt.replace("{question}", ex.question)
        rows, cols = self.grid_shape(w, h) if self.grid_shape is not None else (self.grid_side, self.grid_side)
        grid = RegionGrid(int(rows), w, h, int(cols))
        return PreparedExample(ex, pixels, grid, ids, offsets, q_index, orig, text)

    def tokenize(self, question: str) -> tuple[list[int], list[tuple[int, int]], int, int]:
        """(prompt token ids, their character spans in the prompt text, where the question starts and ends)."""
        head, tail = self.prompt.split("{question}")
        text = head + question + tail
        q0, q1 = len(head), len(head) + len(question)
        max_len = max(8, min(getattr(self.tokenizer, "model_max_length", 512) or 512, 100_000) - (self.Q or 0))
        with self._lock:  # fast tokenizers must not be entered from two threads at once
            enc = self.tokenizer(
                text, return_offsets_mapping=True, add_special_tokens=True, truncation=True, max_length=max_len
            )
        ids = list(enc["input_ids"])
        spans = [tuple(o) for o in enc["offset_mapping"]]
        if self.closing_eos_id is not None and (not ids or ids[-1] != self.closing_eos_id):
            ids.append(self.closing_eos_id)
            spans.append((0, 0))
        return ids, spans, q0, q1
