"""Answer accuracy of a BLIP-2 checkpoint on a VQA dataset: exact match (and VQA accuracy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from PIL import Image

from stcg_model.loading import LoadedModel
from stcg_model.text import normalize_answer, vqa_accuracy


@torch.no_grad()
def greedy_answers(
    lm: LoadedModel, images: Sequence[Image.Image], questions: Sequence[str], max_new_tokens: int = 10
) -> list[str]:
    """Batched greedy answers (processor inserts the query placeholders)."""
    inputs = lm.processor(images=list(images), text=list(questions), padding=True, return_tensors="pt")
    pv = inputs["pixel_values"].to(lm.device, lm.dtype)
    out = lm.model.generate(
        pixel_values=pv,
        input_ids=inputs["input_ids"].to(lm.device),
        attention_mask=inputs["attention_mask"].to(lm.device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
    )
    if not lm.is_encoder_decoder:
        out = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in lm.processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


def evaluate(
    lm: LoadedModel, examples, batch_size: int = 128, progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """One row per example: prediction, exact match (normalised), VQA accuracy, question/answer type."""
    from stcg.images import open_image

    rows = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        preds = greedy_answers(lm, [open_image(e.image_path) for e in chunk], [e.question for e in chunk])
        for e, p in zip(chunk, preds):
            rows.append(
                {
                    "example_id": e.example_id,
                    "question": e.question,
                    "question_type": e.question_type,
                    "answer_type": e.answer_type,
                    "answer": e.answer,
                    "prediction": p,
                    "exact_match": float(normalize_answer(p) == normalize_answer(e.answer)),
                    "vqa_accuracy": vqa_accuracy(p, e.answers) if len(e.answers) >= 10 else float("nan"),
                }
            )
        if progress:
            progress(len(chunk))
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Overall and per question type: count, exact match (and VQA accuracy where available), in %."""

    def summarise(g: pd.DataFrame) -> pd.Series:
        out = {"questions": len(g), "exact_match_%": 100 * g["exact_match"].mean()}
        if g["vqa_accuracy"].notna().any():
            out["vqa_accuracy_%"] = 100 * g["vqa_accuracy"].mean()
        return pd.Series(out)

    per_type = df.groupby("question_type")[df.columns].apply(summarise)
    overall = summarise(df).to_frame("all").T
    table = pd.concat([overall, per_type])
    table["questions"] = table["questions"].astype(int)
    return table.round(2)
