"""The embedded demo model: shipped checkpoint quality, tokenizer coverage, and train-demo itself."""

from __future__ import annotations

import numpy as np
import pytest

from stcg.datasets import easy_vqa_vocabulary, load_easy_vqa
from stcg_model.families.loading import DEMO_MODEL_DIR, default_model, load_model
from stcg_model.maths.text import normalize_answer
from stcg_model.training.tokenizer import split_words


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
    from stcg_model.engine.evaluation import evaluate

    test = load_easy_vqa("test")
    idx = np.random.default_rng(1234).permutation(len(test))[:200]
    sample = [test[i] for i in sorted(idx)]
    df = evaluate(demo, sample, batch_size=100)
    assert len(df) == 200
    assert df["exact_match"].mean() >= 0.95, df[df.exact_match == 0][["question", "answer", "prediction"]].head(20)


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
    from stcg_model.training.easy_vqa import DemoConfig, train_demo

    cfg = DemoConfig(
        vision_steps=120, vision_lr=2e-3, steps=60, batch_size=32, warmup=5, hidden=64, layers=1, qformer_layers=1
    )
    rec = train_demo(tmp_path / "ckpt", cfg, limit=600, progress=False, log=lambda s: None)
    losses = [h["loss"] for h in rec["history"]]
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    assert (
        set(rec["vision_stage"]) == {"shape", "colour"} and rec["vision_stage"]["colour"] > 0.2
    )  # stage 1 learnt (chance: 1/8)
    lm = load_model(str(tmp_path / "ckpt"), device="cpu")
    assert lm.model.config.num_query_tokens == 8


def test_shared_image_forward_equals_the_model_forward():
    """Training runs the vision tower once per image for several questions; same loss and logits as BLIP-2's forward."""
    import torch

    from stcg_model.testing.tiny import tiny_blip2
    from stcg_model.training.easy_vqa import _forward_shared_images

    lm = tiny_blip2("t5", seed=2)
    model, tok = lm.model, lm.processor.tokenizer
    img_id = model.config.image_token_id
    qs = [
        "what color is the shape ?",
        "is there a red circle ?",
        "what shape is in the image ?",
        "is the triangle blue ?",
    ]
    enc = tok(qs, padding=True, return_tensors="pt")
    ids = torch.cat([torch.full((4, model.config.num_query_tokens), img_id), enc["input_ids"]], 1)
    am = torch.cat([torch.ones((4, model.config.num_query_tokens), dtype=torch.long), enc["attention_mask"]], 1)
    labels = tok(["red", "yes", "circle", "no"], padding=True, return_tensors="pt")["input_ids"]
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        shared = _forward_shared_images(model, pixels, 2, ids, am, labels, img_id)
        full = model(pixel_values=pixels.repeat_interleave(2, 0), input_ids=ids, attention_mask=am, labels=labels)
    torch.testing.assert_close(shared.logits, full.logits, atol=1e-5, rtol=1e-5)
    assert abs(shared.loss.item() - full.loss.item()) < 1e-5


def test_stage_one_labels_come_from_each_images_own_answers():
    from easy_vqa import get_answers

    from stcg_model.training.easy_vqa import SHAPES, image_labels

    train = load_easy_vqa("train")[:400]
    paths = sorted({e.image_path for e in train})
    index = {p: i for i, p in enumerate(paths)}
    shape, colour, colours = image_labels(train, index, len(paths), list(get_answers()))
    assert set(colours) == set(get_answers()) - set(SHAPES) - {"yes", "no"}
    for e in train:
        if e.answer in SHAPES:
            assert SHAPES[shape[index[e.image_path]]] == e.answer
        elif e.answer in colours:
            assert colours[colour[index[e.image_path]]] == e.answer
    assert (shape != -100).float().mean() > 0.5 and (colour != -100).float().mean() > 0.3


def test_deletion_curve_equals_an_independent_teacher_forced_forward(demo):
    """Deletion curve points = p(clean answer) from BLIP-2's own forward on the image with the top
    regions greyed (stock processor, no engine code), on the trained demo model whose answers depend on
    the image; the last point (all grey) is shared by both orders."""
    import torch
    from PIL import Image

    from stcg_model.engine.core import STCGEngine, VQAInput

    ex = next(e for e in load_easy_vqa("test") if e.question == "what is the red shape?")
    engine = STCGEngine(demo, seed=0, deletion_steps=4)
    image = ex.load_image().convert("RGB")
    g = engine.explain([VQAInput(ex.example_id, image, ex.question)])[0]
    steps = engine.deletion_steps
    assert len(g.deletion_curve) == len(g.deletion_curve_random) == steps + 1
    assert g.deletion_curve[0] == pytest.approx(g.p_clean) and g.deletion_curve[-1] == g.deletion_curve_random[-1]
    prep = engine._prepare(VQAInput(ex.example_id, image, ex.question))
    ids = torch.tensor([[engine.image_token_id] * engine.Q + prep.token_ids])
    proc = demo.processor.image_processor
    with torch.no_grad():
        gen = demo.model.generate(
            pixel_values=proc(images=[image], return_tensors="pt")["pixel_values"],
            input_ids=ids,
            max_new_tokens=engine.max_new_tokens,
            do_sample=False,
        )
    y = engine._trim_answer(gen[0, 1:].tolist())
    P = prep.grid.num_regions
    order = np.lexsort((np.arange(P), -g.attribution))
    grey = np.round(np.asarray(engine.fill) * 255).astype(np.uint8)
    for s in (1, steps // 2, steps):
        img = np.array(image)
        img[prep.grid.pixel_mask(order[: int(round(s * P / steps))])] = grey
        pv = proc(images=[Image.fromarray(img)], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = demo.model(
                pixel_values=pv, input_ids=ids, decoder_input_ids=torch.tensor([[engine.start_id] + y[:-1]])
            ).logits
        logp = float(logits[0].float().log_softmax(-1)[torch.arange(len(y)), torch.tensor(y)].sum())
        assert np.log(g.deletion_curve[s]) == pytest.approx(logp, abs=1e-3)  # in logs: p falls by many orders
    assert g.deletion_curve[1] < 0.5 * g.p_clean, "the demo model should react to greying its top regions"
