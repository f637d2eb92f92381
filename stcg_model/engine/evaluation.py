"""Answer accuracy of a checkpoint of any family on a VQA dataset: exact match (and VQA accuracy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from stcg_model.families.inputs import MAX_SIDE, decode_answer, downscaled
from stcg_model.families.loading import LoadedModel
from stcg_model.maths.text import normalize_answer, vqa_accuracy


@torch.no_grad()
def greedy_answers(
    lm: LoadedModel, images: Sequence[Image.Image], questions: Sequence[str], max_new_tokens: int = 10
) -> list[str]:
    """Batched greedy answers (processor inserts the query placeholders)."""
    return greedy_answers_with_confidence(lm, images, questions, max_new_tokens)[0]


@torch.no_grad()
def greedy_answers_with_confidence(
    lm: LoadedModel, images: Sequence[Image.Image], questions: Sequence[str], max_new_tokens: int = 10
) -> tuple[list[str], list[float]]:
    """Batched greedy answers and the model's probability of each, ``p(answer | image, question)``:
    the product of the answer tokens' softmax probabilities, end-of-sequence included (what the
    STCG engine calls ``p(y | I)``; a run cut at ``max_new_tokens`` has no end token to count).
    Questions are wrapped in the prompt the engine uses by default (``ModelPasses.default_prompt``: the
    bare question for BLIP-2 T5, the chat template for LLaVA); decoder-only models read left-padded prompts."""
    from stcg_model.families.registry import family_for

    family = family_for(lm)
    passes = family.passes_for(lm)
    text = [passes.default_prompt.format(question=q) for q in questions]
    side = {"padding_side": "left"} if not lm.is_encoder_decoder else {}
    images = [downscaled(im, MAX_SIDE).convert("RGB") for im in images]  # as the engine prepares them
    make_pixels = getattr(family, "pixel_preprocessor", None)
    model_image = getattr(make_pixels(lm), "model_image", None) if make_pixels else None
    if model_image is not None:  # Qwen-VL at a fixed side: the images at the square side the engine gives them
        images = [model_image(np.asarray(im)) for im in images]
    inputs = lm.processor(images=images, text=text, padding=True, return_tensors="pt", **side)
    pv = inputs["pixel_values"].to(lm.device, lm.dtype)
    banned = passes.banned_tokens()
    out = lm.model.generate(
        pixel_values=pv,
        input_ids=inputs["input_ids"].to(lm.device),
        attention_mask=inputs["attention_mask"].to(lm.device),
        # the rest of what the processor made: InstructBLIP's qformer_*, Qwen's image_grid_thw, mm_token_type_ids
        **{k: v.to(lm.device) for k, v in inputs.items() if k not in ("pixel_values", "input_ids", "attention_mask")},
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        output_scores=True,
        return_dict_in_generate=True,
        **({"suppress_tokens": banned} if banned else {}),
    )
    seqs = out.sequences
    if not lm.is_encoder_decoder:
        seqs = seqs[:, inputs["input_ids"].shape[1] :]
    new = seqs[:, -len(out.scores) :]  # (B, steps): the generated tokens, one per score row
    logp = torch.stack([torch.log_softmax(s.double(), dim=-1) for s in out.scores], dim=1)  # (B, steps, V)
    token_logp = logp.gather(2, new.unsqueeze(-1)).squeeze(-1)  # (B, steps)
    # each answer as the engine reads it (``trim_answer``): up to and including the first end token, or up to
    # padding; the steps after it do not count
    trimmed = [passes.trim_answer(row) for row in new.tolist()]
    keep = torch.zeros_like(token_logp, dtype=torch.bool)
    for r, t in enumerate(trimmed):
        keep[r, : len(t)] = True
    probs = torch.exp((token_logp * keep).sum(1)).tolist()
    answers = [decode_answer(lm.processor.tokenizer, t, passes.eos_id) for t in trimmed]
    return answers, probs


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence|.

    ``confidence`` in [0, 1] and ``correct`` (0/1) are 1-D of equal length; 15 bins as in
    Guo et al. 2017. Returns a fraction (0 = perfectly calibrated), NaN for no examples.
    """
    import numpy as np

    conf = np.asarray(confidence, dtype=np.float64)
    acc = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return float("nan")
    idx = np.minimum((conf * bins).astype(int), bins - 1)  # bin b holds (b/bins, (b+1)/bins]; 1.0 in the last
    total = 0.0
    for b in np.unique(idx):
        sel = idx == b
        total += sel.mean() * abs(acc[sel].mean() - conf[sel].mean())
    return float(total)


def evaluate(
    lm: LoadedModel, examples, batch_size: int = 128, progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """One row per example: prediction, its probability under the model (``confidence``), exact match
    (normalised), VQA accuracy, question/answer type."""
    rows = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        preds, confs = greedy_answers_with_confidence(lm, [e.load_image() for e in chunk], [e.question for e in chunk])
        for e, p, c in zip(chunk, preds, confs):
            rows.append(
                {
                    "example_id": e.example_id,
                    "question": e.question,
                    "question_type": e.question_type,
                    "answer_type": e.answer_type,
                    "answer": e.answer,
                    "prediction": p,
                    "confidence": c,
                    "exact_match": float(normalize_answer(p) == normalize_answer(e.answer)),
                    "vqa_accuracy": vqa_accuracy(p, e.answers) if len(e.answers) >= 10 else float("nan"),
                }
            )
        if progress:
            progress(len(chunk))
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Overall and per question type: count, exact match (and VQA accuracy where available), mean
    confidence and expected calibration error (of confidence against exact match), all in %."""

    def summarise(g: pd.DataFrame) -> pd.Series:
        out = {"questions": len(g), "exact_match_%": 100 * g["exact_match"].mean()}
        if "confidence" in g:
            out["mean_confidence_%"] = 100 * g["confidence"].mean()
            out["ece_%"] = 100 * expected_calibration_error(g["confidence"], g["exact_match"])
        if g["vqa_accuracy"].notna().any():
            out["vqa_accuracy_%"] = 100 * g["vqa_accuracy"].mean()
        return pd.Series(out)

    per_type = df.groupby("question_type")[df.columns].apply(summarise)
    overall = summarise(df).to_frame("all").T
    table = pd.concat([overall, per_type])
    table["questions"] = table["questions"].astype(int)
    return table.round(2)
