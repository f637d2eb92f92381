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
from stcg_model.families.inputs import Row
from stcg_model.families.passes import ModelPasses, PassResult
from stcg_model.families.teacher_forcing import answer_labels, causal_positions, causal_sequences, pad_ids
from stcg_model.families.traced import Traced


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
        """``(feats (R, Q, d_lm), C)`` of pixel values ``pv`` (on the model's device and dtype) for rows with
        these ``prompt_ids`` (read where the image path reads text: ``image_kwargs``): what fills each row's
        ``Q`` image slots, and per row ``C`` (Q, P) slot -> region, rows summing to 1 (recorded through
        ``cap``; None when ``cap`` is None)."""

    @abstractmethod
    def causal_lm(self) -> torch.nn.Module:
        """The module taking ``inputs_embeds``/``attention_mask`` and returning next-token ``logits``."""

    def generator(self) -> torch.nn.Module:
        return self.causal_lm()

    def banned_tokens(self) -> list[int]:
        """The image placeholder: fed back as an answer token it would open an image slot with no image."""
        return [self.image_token_id]

    # ------------------------------------------------------------------ shared
    def embed(self, seqs: Sequence[list[int]], feats: torch.Tensor, left_pad: bool):
        """Padded ``inputs_embeds`` (R, N, d) with the image features scattered into the image slots, and the mask."""
        ids, am = pad_ids(seqs, self.pad_id, left_pad)
        ids, am = ids.to(self.lm.device), am.to(self.lm.device)
        embeds = self.model.get_input_embeddings()(ids)
        slots = (ids == self.image_token_id) & am.bool()
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), feats.to(embeds.dtype))
        return embeds, am

    def teacher_forced(
        self, prompt_ids: Sequence[Sequence[int]], feats: torch.Tensor, answers: Sequence[list[int]]
    ) -> list[np.ndarray]:
        """One causal pass over ``[prompt | answer[:-1]]`` (right-padded); per row the (T_r,) log p."""
        seqs = causal_sequences(prompt_ids, answers)
        embeds, am = self.embed(seqs, feats, left_pad=False)
        out = self.causal_lm()(inputs_embeds=embeds, attention_mask=am, return_dict=True, use_cache=False)
        result = []
        for r, (p, a) in enumerate(zip(prompt_ids, answers)):
            pos = causal_positions(len(p), len(a), out.logits.device)
            tgt = torch.arange(len(a), device=out.logits.device), torch.tensor(a, device=out.logits.device)
            # float64 (p(y) near 1 keeps its drops) on the T answer rows only: over every prompt position
            # (LLaVA-1.5: ~600) the float64 vocabulary would dominate the pass's memory
            result.append(out.logits[r, pos].double().log_softmax(-1)[tgt].cpu().numpy())
        return result

    @torch.no_grad()
    def run_pass(
        self, rows: Sequence[Row], answers: Sequence[list[int]] | None, per_example: int, pv: torch.Tensor | None = None
    ) -> PassResult:
        prompts = [self.prompt_ids(ex) for ex, _ in rows]
        with AttentionCapture(self.hook_points(), self.layers) as cap:
            feats, C = self.image_features(self.pixel_values(rows, pv), cap, prompts)
            embeds, am = self.embed(prompts, feats, left_pad=True)
            greedy = self.greedy(inputs_embeds=embeds, attention_mask=am)
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
        _, step_mask = answer_labels(answers)
        with recorded_maps(list(self.trace_points().values())) as maps:
            out = self.model(
                pixel_values=pixel_values.to(dev, self.lm.dtype),
                input_ids=ids.to(dev),
                attention_mask=am.to(dev),
                return_dict=True,
                **self.image_kwargs(prompt_ids),
            )
        raw = out.logits[:, -ids.shape[1] :]  # some versions return logits for the text positions only
        B, T = step_mask.shape
        logp = torch.zeros((B, T), device=dev, dtype=torch.float64)
        logit = torch.zeros((B, T), device=dev, dtype=out.logits.dtype)
        for r, (p, a) in enumerate(zip(prompt_ids, answers)):
            pos, tgt = causal_positions(len(p), len(a), dev), torch.tensor(a, device=dev)
            steps = torch.arange(len(a), device=dev)
            logp[r, : len(a)] = raw[r, pos].double().log_softmax(-1)[steps, tgt]  # the answer rows only
            logit[r, : len(a)] = raw[r, pos, tgt]
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
