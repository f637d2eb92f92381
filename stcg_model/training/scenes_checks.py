"""The causal check of a scenes model: does its answer follow the evidence the mask names?

Each question is re-rendered twice (``stcg.scenes.edited``), every object staying in place at its size:

- **attribute questions** ("what color is the circle?", "what shape is the red object?"):
  - *target edit*: the asked-about object gets another colour (colour questions) or shape (shape
    questions); the question stays valid and its answer is the new value;
  - *distractor edit*: the distractor that shares the target's answer (the other object of the same
    colour, or of the same shape) gets another colour or shape; the answer is unchanged.
- **relation questions** ("is the circle left of the square?"):
  - *target edit*: the two named objects swap shapes (the circle is drawn where the square was and the
    other way round); the answer flips;
  - *distractor edit*: a distractor (an object of the third shape) gets another colour; the answer is
    unchanged. Scenes of two objects have no distractor and no distractor edit.

The model *follows* a target edit when it answers the edit's answer, and its answer *changes* with a
distractor edit when it differs from its answer on the original image. Only when the answers follow
target edits and ignore distractor edits is the mask the model's evidence rather than a guess (issue 23:
bars >= 90 % follow, <= 5 % change, set for attribute questions; relation questions are checked against
the same bars). The new values are drawn from a generator seeded by the example's index, so the check is
the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stcg import scenes

FOLLOW_BAR = 0.90  # target edits: share of answers that follow
CHANGE_BAR = 0.05  # distractor edits: share of answers that change


CHECKED = ("attribute", "relation")  # the question families the check edits


@dataclass(frozen=True)
class EditPair:
    """One question's two edited scenes and the answer the target edit calls for (``distractor_scene``:
    None when the scene has no distractor)."""

    scene: scenes.Scene
    target_scene: scenes.Scene
    target_answer: str
    distractor_scene: scenes.Scene | None


def edit_pair(scene: scenes.Scene, seed: int) -> EditPair:
    """The target and distractor edits of an attribute or relation question's ``scene`` (``ValueError``
    for the other families)."""
    if scene.family == "relation":
        return _relation_pair(scene, seed)
    if scene.family != "attribute":
        raise ValueError(f"the causal check edits {' and '.join(CHECKED)} questions, not {scene.family!r}")
    rng = np.random.default_rng(seed)
    (t,) = scene.targets
    target = scene.objects[t]
    kind = scene.args[0]  # "color" or "shape"
    attr = "colour" if kind == "color" else "shape"
    values = list(scenes.COLOURS) if kind == "color" else list(scenes.SHAPES)

    def other(value: str) -> str:
        pool = [v for v in values if v != value]
        return pool[int(rng.integers(len(pool)))]

    new = other(getattr(target, attr))
    target_scene = scenes.edited(scene, t, **{attr: new})
    # the distractor that shares the answer (there is one by construction); else any other object
    same = [i for i, o in enumerate(scene.objects) if i != t and getattr(o, attr) == getattr(target, attr)]
    rest = [i for i in range(len(scene.objects)) if i != t]
    d = (same or rest)[0]
    distractor_scene = scenes.edited(scene, d, **{attr: other(getattr(scene.objects[d], attr))})
    assert scenes.answer(target_scene) == new and scenes.answer(distractor_scene) == scenes.answer(scene)
    return EditPair(scene, target_scene, new, distractor_scene)


def _relation_pair(scene: scenes.Scene, seed: int) -> EditPair:
    rng = np.random.default_rng(seed)
    first, second = scene.args
    a = next(i for i in scene.targets if scene.objects[i].shape == first)
    b = next(i for i in scene.targets if scene.objects[i].shape == second)
    target_scene = scenes.edited(scenes.edited(scene, a, shape=second), b, shape=first)
    distractors = [i for i in range(len(scene.objects)) if i not in scene.targets]
    distractor_scene = None
    if distractors:
        d = distractors[0]
        pool = [c for c in scenes.COLOURS if c != scene.objects[d].colour]
        distractor_scene = scenes.edited(scene, d, colour=pool[int(rng.integers(len(pool)))])
        assert scenes.answer(distractor_scene) == scenes.answer(scene)
    target_answer = scenes.answer(target_scene)
    assert target_answer != scenes.answer(scene)
    return EditPair(scene, target_scene, target_answer, distractor_scene)


def causal_check(lm, examples, batch_size: int = 128, progress=None) -> pd.DataFrame:
    """One row per attribute and relation question of ``examples`` (scenes examples, ``extra["scene"]``):
    its ``family``, the answers on the original, target-edited and distractor-edited images, ``follows``
    and ``changes`` (0/1; ``changes`` NaN without a distractor edit)."""
    from stcg_model.engine.evaluation import greedy_answers

    pairs, ids = [], []
    for e in examples:
        sc = scenes.Scene.from_dict(e.extra["scene"])
        if sc.family in CHECKED:
            pairs.append(edit_pair(sc, seed=_seed(e.example_id)))
            ids.append(e.example_id)
    rows = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        with_d = [p for p in chunk if p.distractor_scene is not None]
        images = [scenes.render(p.scene) for p in chunk]
        images += [scenes.render(p.target_scene) for p in chunk]
        images += [scenes.render(p.distractor_scene) for p in with_d]
        questions = [p.scene.question for p in chunk] * 2 + [p.scene.question for p in with_d]
        answers = greedy_answers(lm, images, questions)
        n = len(chunk)
        dis_answers = iter(answers[2 * n :])
        for j, p in enumerate(chunk):
            orig, tgt = answers[j], answers[n + j]
            dis = next(dis_answers) if p.distractor_scene is not None else None
            rows.append(
                {
                    "example_id": ids[s + j],
                    "family": p.scene.family,
                    "question": p.scene.question,
                    "answer": scenes.answer(p.scene),
                    "prediction": orig,
                    "target_answer": p.target_answer,
                    "target_prediction": tgt,
                    "distractor_prediction": dis,
                    "follows": float(tgt == p.target_answer),
                    "changes": float(dis != orig) if dis is not None else float("nan"),
                }
            )
        if progress:
            progress(n)
    return pd.DataFrame(rows)


def _seed(example_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")


def causal_summary(df: pd.DataFrame, family: str = "attribute") -> dict:
    """The check's two rates on ``family``'s rows with their bars: ``follow_rate`` (>= 0.90) and
    ``change_rate`` (<= 0.05; over the rows with a distractor edit, ``distractor_edits``)."""
    df = df[df["family"] == family] if len(df) else df
    n = len(df)
    follow = float(df["follows"].mean()) if n else float("nan")
    edits = int(df["changes"].notna().sum()) if n else 0
    change = float(df["changes"].mean()) if edits else float("nan")
    return {
        "family": family,
        "questions": n,
        "distractor_edits": edits,
        "follow_rate": follow,
        "change_rate": change,
        "follow_bar": FOLLOW_BAR,
        "change_bar": CHANGE_BAR,
        "passes": bool(n and edits and follow >= FOLLOW_BAR and change <= CHANGE_BAR),
    }
