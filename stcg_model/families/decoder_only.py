"""The passes of every decoder-only language model whose image slots receive image features (BLIP-2's
OPT, LLaVA): one implementation, a family supplies where its weights and features come from.

``E`` and ``D`` come from the causal self-attention (hook point ``lm.self``) of one teacher-forced pass over
``[prompt (with the image slots) | answer[:-1]]`` (right-padded): ``E`` is the block of the ``L`` prompt
positions, ``D[t]`` the row of position ``L - 1 + t`` (the one predicting answer token ``t``) over the
prompt positions, not renormalised. Greedy answers come from ``generate`` on left-padded prompt
embeddings (KV cache); the teacher-forced pass reuses the image features.

A family subclass provides ``hook_points`` (``lm.self`` and whatever ``image_features`` records),
``trace_points`` (``lm.self``, plus ``qformer.self``/``qformer.cross`` where a Q-Former sits between
the image and the slots), ``image_features`` (slot features and ``C``) and ``causal_lm`` (the module
mapping ``inputs_embeds`` to next-token logits).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from stcg_model.families.capture import AttentionCapture, HookPoint, recorded_maps
from stcg_model.families.inputs import Row, TokenIds
from stcg_model.families.passes import ModelPasses, PassResult
from stcg_model.families.teacher_forcing import answer_labels, answer_rows, causal_sequences, pad_ids
from stcg_model.families.traced import Traced


def _first(x) -> int | None:
    if isinstance(x, (list, tuple)):
        return int(x[0]) if x else None
    return None if x is None else int(x)


def token_ids(config, tokenizer, slots: int) -> TokenIds:
    """The token facts of a chat-template family (LLaVA, Qwen-VL) from its config and tokenizer: ``slots`` image
    slots, the config's image token, end of sequence of the language model (the first, where a config lists
    several; else the tokenizer's), padding of the config or the tokenizer (else the end token), which also
    starts nothing (no decoder start token)."""
    tc = config.text_config
    eos = _first(tc.eos_token_id)
    eos = eos if eos is not None else _first(getattr(tokenizer, "eos_token_id", None))
    pad = _first(tc.pad_token_id)
    pad = pad if pad is not None else _first(getattr(tokenizer, "pad_token_id", None))
    pad = pad if pad is not None else eos
    return TokenIds(int(slots), int(config.image_token_id), int(eos), int(pad), int(pad))


def chat_prompt(processor, fallback: str) -> str:
    """The prompt template (``{question}`` once) of the processor's chat template for one user turn with the
    image and the question, generation prompt added; ``fallback`` when the processor has no template."""
    if getattr(processor, "chat_template", None):
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "{question}"}]}]
        text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        if isinstance(text, str) and text.count("{question}") == 1:
            return text
    return fallback


def language_model_points(model) -> dict[str, HookPoint]:
    """The one hook point of a model whose language model's layers are ``model.model.language_model.layers``
    (LLaVA, Qwen-VL): ``lm.self``, the causal self-attention (B, H, N, N), for capture and trace alike."""
    layers = model.model.language_model.layers
    return {"lm.self": HookPoint("lm.self", tuple(layer.self_attn for layer in layers), 1)}


class SlotDecoderPasses(ModelPasses):
    """A decoder-only language model reading image features in its image slots (module docstring)."""

    kind = "decoder-only"
    closes_prompt_with_eos = False
    generated_prefix = 0  # generate on embeddings returns the new tokens only

    # ------------------------------------------------------------------ what a family provides
    @abstractmethod
    def hook_points(self) -> dict[str, HookPoint]:
        """The capture points: ``lm.self`` (the language model's self-attention layers) and any the
        family's ``image_features`` records."""

    @abstractmethod
    def trace_points(self) -> dict[str, HookPoint]:
        """Every attention module from the image to the answer, in ``Traced``'s layout (``lm.self``; a
        Q-Former family adds ``qformer.self`` and ``qformer.cross``)."""

    @abstractmethod
    def image_features(
        self, pv: torch.Tensor, cap: AttentionCapture | None = None, prompt_ids: Sequence[Sequence[int]] = ()
    ) -> tuple[torch.Tensor, list[np.ndarray] | None]:
        """``(feats, C)`` of pixel values ``pv`` (on the model's device and dtype) for rows with these
        ``prompt_ids`` (read where the image path reads text, ``image_kwargs``, or the rows' grids): ``feats``
        (R, Q, d_lm), or (sum_r Q_r, d_lm) when rows have different slot counts, fills the rows' image slots
        in order, and per row ``C`` (Q, P) slot -> region, rows summing to 1 (recorded through ``cap``; None
        when ``cap`` is None)."""

    @abstractmethod
    def causal_lm(self) -> torch.nn.Module:
        """The module taking ``inputs_embeds``/``attention_mask`` and returning next-token ``logits``."""

    def generator(self) -> torch.nn.Module:
        return self.causal_lm()

    def position_ids(self, ids: torch.Tensor, am: torch.Tensor, prompt_ids=()) -> torch.Tensor | None:
        """Position ids of padded input ``ids`` (R, N) with mask ``am`` (rows starting with these
        ``prompt_ids``), or None: the model numbers the unmasked tokens itself (Qwen's multimodal positions
        are given here: ``families.qwen_vl``)."""
        return None

    def model_inputs(self, pixel_values: torch.Tensor, prompt_ids) -> dict[str, torch.Tensor]:
        """What the model's own ``forward`` reads of the image, besides the input ids (the traced forward):
        the pixel values on its device and dtype, and ``image_kwargs``."""
        return {"pixel_values": pixel_values.to(self.lm.device, self.lm.dtype), **self.image_kwargs(prompt_ids)}

    def banned_tokens(self) -> list[int]:
        """The image placeholder: fed back as an answer token it would open an image slot with no image."""
        return [self.image_token_id]

    # ------------------------------------------------------------------ shared
    def embed(
        self, seqs: Sequence[list[int]], feats: torch.Tensor, left_pad: bool, prompt_ids: Sequence[Sequence[int]] = ()
    ) -> dict[str, torch.Tensor]:
        """The language model's inputs: padded ``inputs_embeds`` (R, N, d) with the image features scattered
        into the image slots, the mask, and ``position_ids`` where the family gives them (``seqs`` start with
        the rows' ``prompt_ids``)."""
        ids, am = pad_ids(seqs, self.pad_id, left_pad)
        ids, am = ids.to(self.lm.device), am.to(self.lm.device)
        embeds = self.model.get_input_embeddings()(ids)
        slots = (ids == self.image_token_id) & am.bool()
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), feats.to(embeds.dtype))
        pos = self.position_ids(ids, am, prompt_ids)
        return {"inputs_embeds": embeds, "attention_mask": am, **({} if pos is None else {"position_ids": pos})}

    def teacher_forced(
        self, prompt_ids: Sequence[Sequence[int]], feats: torch.Tensor, answers: Sequence[list[int]]
    ) -> list[np.ndarray]:
        """One causal pass over ``[prompt | answer[:-1]]`` (right-padded); per row the (T_r,) log p. The head
        runs on the answer rows only (``answer_rows``): over every prompt position (LLaVA-1.5: ~600, Qwen-VL:
        hundreds to thousands) the vocabulary's logits would dominate the pass's memory."""
        seqs = causal_sequences(prompt_ids, answers)
        inputs = self.embed(seqs, feats, left_pad=False, prompt_ids=prompt_ids)
        keep = answer_rows(prompt_ids, answers, inputs["inputs_embeds"].device)
        out = self.causal_lm()(**inputs, return_dict=True, use_cache=False, logits_to_keep=keep)
        result = []
        for r, a in enumerate(answers):
            tgt = torch.arange(len(a), device=out.logits.device), torch.tensor(a, device=out.logits.device)
            # float64 (p(y) near 1 keeps its drops)
            result.append(out.logits[r, : len(a)].double().log_softmax(-1)[tgt].cpu().numpy())
        return result

    @torch.no_grad()
    def run_pass(
        self, rows: Sequence[Row], answers: Sequence[list[int]] | None, per_example: int, pv: torch.Tensor | None = None
    ) -> PassResult:
        prompts = [self.prompt_ids(ex) for ex, _ in rows]
        with AttentionCapture(self.hook_points(), self.layers) as cap:
            feats, C = self.image_features(self.pixel_values(rows, pv), cap, prompts)
            greedy = self.greedy(**self.embed(prompts, feats, left_pad=True, prompt_ids=prompts))
            answers = answers or self.clean_answers(greedy, per_example)
            with cap.recording("lm.self"):
                step_lp = self.teacher_forced(prompts, feats, answers)
            A_raw = cap.pop("lm.self")
        A_all = A_raw.cpu().numpy()
        E, D = [], []
        for r, p in enumerate(prompts):
            L = len(p)
            E.append(A_all[r, :L, :L])
            D.append(A_all[r, L - 1 : L - 1 + len(answers[r]), :L])
        return PassResult(list(C), E, D, step_lp, greedy)

    @torch.no_grad()
    def logprobs(self, prompt_ids, answers, pixel_values) -> list[np.ndarray]:
        feats, _ = self.image_features(pixel_values.to(self.lm.device, self.lm.dtype), None, prompt_ids)
        return self.teacher_forced(prompt_ids, feats, answers)

    def trace(self, prompt_ids, answers, pixel_values) -> Traced:
        dev = self.lm.device
        ids, am = pad_ids(causal_sequences(prompt_ids, answers), self.pad_id)
        ids, am = ids.to(dev), am.to(dev)
        _, step_mask = answer_labels(answers)
        pos = self.position_ids(ids, am, prompt_ids)
        with recorded_maps(list(self.trace_points().values())) as maps:
            out = self.model(
                input_ids=ids,
                attention_mask=am,
                return_dict=True,
                logits_to_keep=answer_rows(prompt_ids, answers, dev),  # (B, T_max): the answer rows only
                **self.model_inputs(pixel_values, prompt_ids),
                **({} if pos is None else {"position_ids": pos}),
            )
        B, T = step_mask.shape
        logp = torch.zeros((B, T), device=dev, dtype=torch.float64)
        logit = torch.zeros((B, T), device=dev, dtype=out.logits.dtype)
        for r, a in enumerate(answers):
            tgt, steps = torch.tensor(a, device=dev), torch.arange(len(a), device=dev)
            logp[r, : len(a)] = out.logits[r, : len(a)].double().log_softmax(-1)[steps, tgt]
            logit[r, : len(a)] = out.logits[r, steps, tgt]
        got = lambda name: list(maps.get(name, []))  # noqa: E731
        return Traced(
            got("qformer.self"),
            got("qformer.cross"),
            got("lm.self"),
            [],
            [],
            logp,
            step_mask,
            logit,
            self.kind,
            [self.slot_positions(p) for p in prompt_ids],
        )
