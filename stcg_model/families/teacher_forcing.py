"""The one teacher-forced path (every family): the inputs that feed an answer back to the model and the log
probabilities read from its logits, shared by the STCG's passes and the traced forward of the
gradient methods (what the traced forward returns is ``stcg_model.families.traced.Traced``).

T5 (encoder-decoder): the decoder reads ``[start | answer[:-1]]`` and predicts ``answer``.
OPT (decoder-only): one causal sequence ``[query slots | prompt | answer[:-1]]``; answer token ``t`` is
predicted at position ``L - 1 + t`` (``L`` prompt positions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_ids(seqs: Sequence[list[int]], pad_id: int, left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N) long ids padded with ``pad_id`` (on the right, or the left) and the (R, N) attention mask."""
    N = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), N), pad_id, dtype=torch.long)
    am = torch.zeros((len(seqs), N), dtype=torch.long)
    for r, s in enumerate(seqs):
        sl = slice(N - len(s), N) if left_pad else slice(0, len(s))
        ids[r, sl] = torch.tensor(s)
        am[r, sl] = 1
    return ids, am


def answer_labels(answers: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (B, T) long, -1 beyond each answer, and the (B, T) bool step mask (which steps are real)."""
    T = max(len(a) for a in answers)
    labels = torch.full((len(answers), T), -1, dtype=torch.long)
    for r, a in enumerate(answers):
        labels[r, : len(a)] = torch.tensor(a, dtype=torch.long)
    return labels, labels >= 0


def decoder_inputs(answers: Sequence[list[int]], start_id: int, pad_id: int):
    """T5: decoder inputs (B, T) ``[start | answer[:-1]]`` padded with ``pad_id``, the labels (B, T) (-1
    padding) and the (B, T) bool step mask."""
    labels, step_mask = answer_labels(answers)
    dec_in = torch.full_like(labels, pad_id)
    dec_in[:, 0] = start_id
    dec_in[:, 1:] = labels[:, :-1].clamp(min=0)
    dec_in[~step_mask] = pad_id
    return dec_in, labels, step_mask


def causal_sequences(prompt_ids: Sequence[Sequence[int]], answers: Sequence[list[int]]) -> list[list[int]]:
    """OPT: per row ``[prompt ids | answer[:-1]]`` (prompt ids with the query slots' image tokens)."""
    return [list(p) + list(a[:-1]) for p, a in zip(prompt_ids, answers)]


def causal_positions(prompt_len: int, answer_len: int, device=None) -> torch.Tensor:
    """OPT: the positions ``L - 1 .. L - 2 + T`` whose logits predict the answer's tokens."""
    return torch.arange(prompt_len - 1, prompt_len - 1 + answer_len, device=device)


def answer_rows(prompt_ids: Sequence[Sequence[int]], answers: Sequence[list[int]], device=None) -> torch.Tensor:
    """(B, T_max) per row the positions ``L_r - 1 .. L_r - 2 + T_r`` that predict its answer (``causal_positions``),
    shorter rows repeating their last one: the ``logits_to_keep`` of a causal pass, so the language model head
    runs on the answer rows only, never on every prompt position."""
    T = max(len(a) for a in answers)
    rows = [[len(p) - 1 + min(t, len(a) - 1) for t in range(T)] for p, a in zip(prompt_ids, answers)]
    return torch.tensor(rows, dtype=torch.long, device=device)


def gather_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) ``logits[b, t, labels[b, t]]`` (labels -1 read token 0; callers mask those steps)."""
    return logits.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
