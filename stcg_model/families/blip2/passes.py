"""The model passes: image variants + prompts through BLIP-2, with the attention the STCG reads.

One interface, ``ModelPasses`` (``stcg_model.families.passes``), two classes picked once per model by
``passes_for`` (both ``Blip2Passes``: token ids, greedy decoding by the language model's ``generate``):

* ``EncoderDecoderPasses`` (T5, e.g. ``Salesforce/blip2-flan-t5-xl``): vision tower, Q-Former and
  T5 encoder run once per row (capturing ``C`` and ``E``); greedy decoding re-runs the decoder on
  the whole prefix (no cache), so its last step is the teacher-forced pass of every row on its own
  greedy answer (``D`` and the step log p are kept from it); only rows whose target differs get a
  separate teacher-forced pass.
* ``DecoderOnlyPasses`` (OPT, e.g. ``Salesforce/blip2-opt-2.7b``): the family-blind decoder-only passes
  (``stcg_model.families.decoder_only``, shared with LLaVA) with the Q-Former's outputs in the slots.

A *row* is ``(PreparedExample, (h, w, 3) uint8 image)``: one image variant of an example. Positions
are ``L = Q + len(ex.token_ids)`` per row: ``[Q query slots | prompt tokens]``. Answers are token id
lists, ``</s>`` included when the model emitted it. Log probabilities are natural logs, float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from stcg_model.families.blip2.points import blip2_hook_points, blip2_trace_points
from stcg_model.families.capture import AttentionCapture, HookPoint, LayerSelection, recorded_maps
from stcg_model.families.decoder_only import SlotDecoderPasses
from stcg_model.families.inputs import Row, TokenIds
from stcg_model.families.loading import LoadedModel
from stcg_model.families.passes import ModelPasses, PassResult
from stcg_model.families.teacher_forcing import decoder_inputs, gather_labels, pad_ids
from stcg_model.families.traced import Traced
from stcg_model.maths import alignment as A


class Blip2Passes(ModelPasses):
    """What BLIP-2's two kinds of language model share: its token ids (``TokenIds.of`` its config) and
    greedy decoding through the language model's ``generate``."""

    def __init__(self, *args, **kwargs):
        """``ModelPasses``'s arguments; the token facts come from the BLIP-2 config."""
        super().__init__(*args, **kwargs)
        ids = TokenIds.of(self.model.config)
        self.Q, self.image_token_id = ids.Q, ids.image_token_id
        self.eos_id, self.pad_id, self.start_id = ids.eos_id, ids.pad_id, ids.start_id

    def generator(self) -> torch.nn.Module:
        return self.model.language_model


class EncoderDecoderPasses(Blip2Passes):
    """T5 language models: ``E`` from the encoder self-attention, ``D`` from the decoder cross-attention."""

    kind = "encoder-decoder"
    default_prompt = "{question}"  # how the demo model was trained; flan-t5 answers the bare question
    closes_prompt_with_eos = True
    generated_prefix = 1  # T5 output starts with the decoder start token

    def encode(self, rows: Sequence[Row], pv: torch.Tensor | None = None):
        """``encode_ids`` of the rows' prompts and images."""
        return self.encode_ids([self.prompt_ids(ex) for ex, _ in rows], self.pixel_values(rows, pv))

    @torch.no_grad()
    def encode_ids(self, prompt_ids: Sequence[Sequence[int]], pv: torch.Tensor):
        """Vision + Q-Former + T5 encoder for every row (``pv`` on the model's device and dtype); returns
        the encoder outputs and the (R, L) mask."""
        model = self.model
        ids, am = pad_ids([list(p) for p in prompt_ids], self.pad_id)
        ids, am = ids.to(self.lm.device), am.to(self.lm.device)
        feats = model.get_image_features(pv, return_dict=True, **self.image_kwargs(prompt_ids)).pooler_output
        embeds = model.get_input_embeddings()(ids)
        mask = (ids == self.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
        enc = model.language_model.get_encoder()(inputs_embeds=embeds, attention_mask=am, return_dict=True)
        return enc, am

    @torch.no_grad()
    def teacher_forced(self, enc, am, answers: Sequence[list[int]]) -> list[np.ndarray]:
        """One decoder pass with ``answers`` teacher-forced; per row the (T_r,) log p of each answer token."""
        dec_in, labels, step_mask = decoder_inputs(answers, self.start_id, self.pad_id)
        dmask = step_mask.long()
        dev = self.lm.device
        out = self.model.language_model(
            encoder_outputs=enc,
            attention_mask=am,
            decoder_input_ids=dec_in.to(dev),
            decoder_attention_mask=dmask.to(dev),
            return_dict=True,
        )
        logp = out.logits.double().log_softmax(-1)  # float64: p(y) near 1 keeps its drops
        gathered = gather_labels(logp, labels.to(dev))
        return [gathered[r, : len(a)].cpu().numpy() for r, a in enumerate(answers)]

    @torch.no_grad()
    def run_pass(
        self, rows: Sequence[Row], answers: Sequence[list[int]] | None, per_example: int, pv: torch.Tensor | None = None
    ) -> PassResult:
        with AttentionCapture(blip2_hook_points(self.model), self.layers) as cap:
            with cap.recording("qformer.cross", "lm.encoder.self"):
                enc, am = self.encode(rows, pv)
            C_raw = cap.pop("qformer.cross")
            E_raw = cap.pop("lm.encoder.self")
            greedy, own_lp, own_D = self.greedy_teacher_forced(enc, am, cap)
            answers = answers or self.clean_answers(greedy, per_example)
            step_lp = [own_lp[r][: len(a)] for r, a in enumerate(answers)]
            D_rows = [own_D[r] for r in range(len(rows))]
            redo = [r for r, a in enumerate(answers) if greedy[r] != a]
            if redo:
                idx = torch.tensor(redo, device=am.device)
                sub = type(enc)(last_hidden_state=enc.last_hidden_state.index_select(0, idx))
                with cap.recording("lm.decoder.cross"):
                    lp = self.teacher_forced(sub, am.index_select(0, idx), [answers[r] for r in redo])
                D_sub = cap.pop("lm.decoder.cross").cpu().numpy()
                for j, r in enumerate(redo):
                    step_lp[r], D_rows[r] = lp[j], D_sub[j]
        C_all = A.query_region_attention(C_raw.cpu().numpy())
        E_all = E_raw.cpu().numpy()
        C, E, D = [], [], []
        for r, (ex, _) in enumerate(rows):
            L = self.Q + len(ex.token_ids)
            C.append(C_all[r])
            E.append(E_all[r, :L, :L])
            D.append(D_rows[r][: len(answers[r]), :L])
        return PassResult(C, E, D, step_lp, greedy)

    @torch.no_grad()
    def greedy_teacher_forced(self, enc, am, cap: AttentionCapture):
        """Greedy answers, plus each row's per-step log p and decoder cross-attention (T, L) on its own
        answer, from the last full-prefix decoder pass."""
        dev = am.device
        R = am.shape[0]
        dec = torch.full((R, 1), self.start_id, dtype=torch.long, device=dev)
        done = torch.zeros(R, dtype=torch.bool, device=dev)
        for t in range(self.max_new_tokens):
            with cap.recording("lm.decoder.cross"):
                out = self.model.language_model(
                    encoder_outputs=enc, attention_mask=am, decoder_input_ids=dec, use_cache=False, return_dict=True
                )
            logits = out.logits[:, -1].float()
            if t < self.min_new_tokens:  # as generate's min_new_tokens processor does; out of place,
                # because out.logits (float32 already) is read again below for the step log p
                logits = logits.index_fill(-1, torch.tensor([self.eos_id], device=dev), float("-inf"))
            nxt = torch.where(done, torch.full_like(done, self.pad_id, dtype=torch.long), logits.argmax(-1))
            dec = torch.cat([dec, nxt[:, None]], 1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
        D_all = cap.pop("lm.decoder.cross").cpu().numpy()  # (R, T, L) of the last pass
        logp = out.logits.double().log_softmax(-1).gather(-1, dec[:, 1:, None]).squeeze(-1).cpu().numpy()
        greedy = [self.trim_answer(row) for row in dec[:, 1:].tolist()]
        return greedy, [logp[r, : len(g)] for r, g in enumerate(greedy)], [D_all[r] for r in range(R)]

    @torch.no_grad()
    def logprobs(self, prompt_ids, answers, pixel_values) -> list[np.ndarray]:
        enc, am = self.encode_ids(prompt_ids, pixel_values.to(self.lm.device, self.lm.dtype))
        return self.teacher_forced(enc, am, answers)

    def trace(self, prompt_ids, answers, pixel_values) -> Traced:
        dev = self.lm.device
        ids, am = pad_ids([list(p) for p in prompt_ids], self.pad_id)
        dec_in, labels, step_mask = decoder_inputs(answers, self.start_id, self.pad_id)
        with recorded_maps(list(blip2_trace_points(self.model).values())) as maps:
            out = self.model(
                pixel_values=pixel_values.to(dev, self.lm.dtype),
                input_ids=ids.to(dev),
                attention_mask=am.to(dev),
                decoder_input_ids=dec_in.to(dev),
                decoder_attention_mask=step_mask.long().to(dev),
                return_dict=True,
                **self.image_kwargs(prompt_ids),
            )
        mask = step_mask.to(dev)
        lab = labels.to(dev)
        logp = gather_labels(out.logits.double().log_softmax(-1), lab) * mask  # float64: see teacher_forced
        logit = gather_labels(out.logits, lab) * mask
        got = lambda name: list(maps[name])  # noqa: E731
        return Traced(
            got("qformer.self"),
            got("qformer.cross"),
            got("lm.encoder.self"),
            got("lm.decoder.self"),
            got("lm.decoder.cross"),
            logp,
            mask,
            logit,
            self.kind,
            [self.slot_positions(p) for p in prompt_ids],
        )


class DecoderOnlyPasses(Blip2Passes, SlotDecoderPasses):
    """OPT language models (``SlotDecoderPasses``): the slots get the projected Q-Former outputs, ``C`` is
    the Q-Former cross-attention."""

    default_prompt = "Question: {question} Answer:"  # BLIP-2's VQA prompt

    def hook_points(self) -> dict[str, HookPoint]:
        return blip2_hook_points(self.model)

    def trace_points(self) -> dict[str, HookPoint]:
        return blip2_trace_points(self.model)

    def causal_lm(self) -> torch.nn.Module:
        return self.model.language_model

    def query_features(self, pv: torch.Tensor, prompt_ids: Sequence[Sequence[int]] = ()) -> torch.Tensor:
        """(R, Q, d_lm) projected Q-Former outputs of pixel values ``pv`` (on the model's device and dtype)
        for rows with these ``prompt_ids`` (``image_kwargs``)."""
        return self.model.get_image_features(pv, return_dict=True, **self.image_kwargs(prompt_ids)).pooler_output

    def image_features(self, pv, cap=None, prompt_ids=()):
        if cap is None:
            return self.query_features(pv, prompt_ids), None
        with cap.recording("qformer.cross"):
            feats = self.query_features(pv, prompt_ids)
        return feats, list(A.query_region_attention(cap.pop("qformer.cross").cpu().numpy()))


def passes_for(
    lm: LoadedModel,
    layers: LayerSelection | None = None,
    max_new_tokens: int = 10,
    pixels: Callable[[Sequence[np.ndarray]], torch.Tensor] | None = None,
) -> ModelPasses:
    """The passes of ``lm``'s kind of language model: ``EncoderDecoderPasses`` or ``DecoderOnlyPasses``
    (the defaults are enough for ``trace`` and ``logprobs``, which take pixel values)."""
    cls = EncoderDecoderPasses if lm.is_encoder_decoder else DecoderOnlyPasses
    return cls(lm, layers, max_new_tokens, pixels)
