"""LLaVA's regions and image slots, from the config alone: one slot per ViT patch, the CLS feature dropped."""

from __future__ import annotations

from stcg.errors import StcgError


def grid_side(config) -> int:
    """The region grid side ``G`` (``P = G * G`` ViT patches, one image slot each) of a LLaVA config."""
    vc = config.vision_config
    return int(vc.image_size // vc.patch_size)


def image_slots(config) -> int:
    """``Q = P``: one language-model slot per patch. A checkpoint that keeps the CLS feature
    (``vision_feature_select_strategy="full"``) has a slot no region owns and is refused in one line."""
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    if strategy != "default":
        raise StcgError(
            f"LLaVA checkpoints with vision_feature_select_strategy={strategy!r} are not supported "
            "(its CLS slot has no image region); supported: 'default'"
        )
    return grid_side(config) ** 2
