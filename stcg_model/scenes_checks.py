"""The causal check of a scenes model: does its answer follow the evidence the mask names?

For each attribute question ("what color is the circle?", "what shape is the red object?") the scene is
re-rendered twice (``stcg.scenes.edited``), each object staying in place at its size:

- **target edit**: the asked-about object gets another colour (colour questions) or shape (shape
  questions); the question stays valid, and its answer is the new value. The model *follows* the edit
  when it answers that new value.
- **distractor edit**: the distractor that shares the target's answer (the other object of the same
  colour, or of the same shape) gets another colour or shape; the question and its answer are
  unchanged. The model's answer *changes* when it differs from its answer on the original image.

Only when the answers follow target edits and ignore distractor edits is the mask the model's evidence
rather than a guess (issue 23: bars >= 90 % follow, <= 5 % change). The new values are drawn from a
generator seeded by the example's index, so the check is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stcg import scenes

FOLLOW_BAR = 0.90  # target edits: share of answers that follow
CHANGE_BAR = 0.05  # distractor edits: share of answers that change


@dataclass(frozen=True)
class EditPair:
    """One attribute question's two edited scenes and the answer the target edit calls for."""

    scene: scenes.Scene
    target_scene: scenes.Scene
    target_answer: str
    distractor_scene: scenes.Scene


def edit_pair(scene: scenes.Scene, seed: int) -> EditPair:
    """The target and distractor edits of an attribute question's ``scene`` (``ValueError`` otherwise)."""
    if scene.family != "attribute":
        raise ValueError(f"the causal check edits attribute questions, not {scene.family!r}")
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


def causal_check(lm, examples, batch_size: int = 128, progress=None) -> pd.DataFrame:
    """One row per attribute question of ``examples`` (scenes examples, ``extra["scene"]``): the answers
    on the original, target-edited and distractor-edited images, ``follows`` and ``changes`` (0/1)."""
    from stcg_model.evaluation import greedy_answers

    pairs, ids = [], []
    for e in examples:
        sc = scenes.Scene.from_dict(e.extra["scene"])
        if sc.family == "attribute":
            pairs.append(edit_pair(sc, seed=_seed(e.example_id)))
            ids.append(e.example_id)
    rows = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        images = [scenes.render(p.scene) for p in chunk]
        images += [scenes.render(p.target_scene) for p in chunk]
        images += [scenes.render(p.distractor_scene) for p in chunk]
        answers = greedy_answers(lm, images, [p.scene.question for p in chunk] * 3)
        n = len(chunk)
        for j, p in enumerate(chunk):
            orig, tgt, dis = answers[j], answers[n + j], answers[2 * n + j]
            rows.append(
                {
                    "example_id": ids[s + j],
                    "question": p.scene.question,
                    "answer": scenes.answer(p.scene),
                    "prediction": orig,
                    "target_answer": p.target_answer,
                    "target_prediction": tgt,
                    "distractor_prediction": dis,
                    "follows": float(tgt == p.target_answer),
                    "changes": float(dis != orig),
                }
            )
        if progress:
            progress(n)
    return pd.DataFrame(rows)


def _seed(example_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")


def causal_summary(df: pd.DataFrame) -> dict:
    """The check's two rates with their bars: ``follow_rate`` (>= 0.90) and ``change_rate`` (<= 0.05)."""
    n = len(df)
    follow = float(df["follows"].mean()) if n else float("nan")
    change = float(df["changes"].mean()) if n else float("nan")
    return {
        "questions": n,
        "follow_rate": follow,
        "change_rate": change,
        "follow_bar": FOLLOW_BAR,
        "change_bar": CHANGE_BAR,
        "passes": bool(n and follow >= FOLLOW_BAR and change <= CHANGE_BAR),
    }
