"""The scenes testbed (``--dataset scenes[:N]``): generated shapes with known evidence (``stcg.scenes``)."""

from __future__ import annotations

from stcg.datasets.example import VQAExample
from stcg.datasets.registry import DatasetSource, register_dataset


def load_scenes(split: str = "test", size: str = "") -> list[VQAExample]:
    """The scenes testbed (``stcg.scenes``): ``size`` examples of ``split`` (``scenes:N``; default
    ``SPLIT_SIZES``), each rendered on demand, with its scene (``extra["scene"]``, a dict) and mask kind."""
    from stcg import scenes

    n = scenes.parse_spec(size, split)
    out = []
    for i in range(n):
        sc = scenes.generate(split, i)

        def loader(sc=sc):
            return scenes.render(sc)

        def mask_loader(sc=sc):
            return scenes.mask(sc)

        out.append(
            VQAExample(
                f"scenes:{split}:{i}",
                f"scenes:{split}:{i}",
                sc.question,
                (scenes.answer(sc),),
                scenes.question_type(sc),
                scenes.answer_type(sc),
                str(i),
                {"image_loader": loader, "mask_loader": mask_loader, "scene": sc.to_dict(), "mask_kind": sc.mask_kind},
            )
        )
    return out


register_dataset(
    DatasetSource(
        "scenes",
        "scenes[:N]",
        "generated shapes with known evidence, docs/scenes.md",
        lambda arg, split: load_scenes(split or "test", arg),
        takes_arg=None,
        default_split="test",
    )
)
