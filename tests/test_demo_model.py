"""The embedded demo model: shipped checkpoint quality, tokenizer coverage, and train-demo itself."""
from __future__ import annotations

import numpy as np
import pytest

from ingest.datasets import easy_vqa_vocabulary, load_easy_vqa
from stcg_model.loading import DEMO_MODEL_DIR, default_model, load_model
from stcg_model.text import normalize_answer
from stcg_model.tokenizer import split_words


@pytest.fixture(scope="module")
def demo():
    assert (DEMO_MODEL_DIR / "config.json").is_file(), "the demo checkpoint must ship in stcg_model/demo_model"
    return load_model(None, device="cpu")


def test_default_model_is_the_shipped_checkpoint_loaded_by_from_pretrained(demo):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    assert default_model() == str(DEMO_MODEL_DIR)
    assert isinstance(demo.model, Blip2ForConditionalGeneration) and isinstance(demo.processor, Blip2Processor)
    size = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir())
    assert size <= 20 * 2**20


def test_demo_model_answers_a_fixed_sample_of_test_questions(demo):
    from stcg_model.evaluation import evaluate

    test = load_easy_vqa("test")
    idx = np.random.default_rng(1234).permutation(len(test))[:200]
    sample = [test[i] for i in sorted(idx)]
    df = evaluate(demo, sample, batch_size=100)
    assert len(df) == 200
    assert df["exact_match"].mean() >= 0.85, df[df.exact_match == 0][["question", "answer", "prediction"]].head(20)


def test_tokenizer_round_trips_every_easy_vqa_word(demo):
    tok = demo.processor.tokenizer
    words = sorted({w for t in easy_vqa_vocabulary() for w in split_words(t)})
    assert len(words) > 20
    unk = tok.unk_token_id
    for w in words:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        assert ids and unk not in ids, w
        assert tok.decode(ids).strip() == w
    q = "What color is the shape?"
    assert normalize_answer(tok.decode(tok(q)["input_ids"], skip_special_tokens=True)) == normalize_answer(q.lower())


def test_train_demo_runs_and_its_loss_decreases(tmp_path):
    from stcg_model.training import DemoConfig, train_demo

    cfg = DemoConfig(steps=60, batch_size=32, warmup=5, hidden=64, layers=1, qformer_layers=1)
    rec = train_demo(tmp_path / "ckpt", cfg, limit=600, progress=False, log=lambda s: None)
    losses = [h["loss"] for h in rec["history"]]
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    lm = load_model(str(tmp_path / "ckpt"), device="cpu")
    assert lm.model.config.num_query_tokens == 8
