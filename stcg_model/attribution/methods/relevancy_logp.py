"""``relevancy_logp``: ``relevancy`` with log p as the gradient target (an option)."""

from __future__ import annotations

from stcg_model.attribution.base import register_attribution
from stcg_model.attribution.methods.relevancy import Relevancy


@register_attribution
class RelevancyLogp(Relevancy):
    """``relevancy`` with the gradient of log p(answer token) instead of its logit (the target before
    issue 23; it vanishes as p -> 1). An option: not part of ``--attributions all``."""

    name = "relevancy_logp"
    target = "logp"
    in_all = False
    description = "relevancy with log p as the gradient target (option)"
