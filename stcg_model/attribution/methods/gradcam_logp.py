"""``gradcam_logp``: ``gradcam`` with log p as the gradient target (an option)."""

from __future__ import annotations

from stcg_model.attribution.base import register_attribution
from stcg_model.attribution.methods.gradcam import GradCAM


@register_attribution
class GradCAMLogp(GradCAM):
    """``gradcam`` with the gradient of log p(answer) instead of the answer logits. An option: not
    part of ``--attributions all``."""

    name = "gradcam_logp"
    target = "logp"
    in_all = False
    description = "Grad-CAM with log p as the gradient target (option)"
