"""``rollout``: attention rollout through co-attention, gradient-free (docs/spec.md section 6)."""

from __future__ import annotations

import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionMethod, MethodMaps, region_from_steps, register_attribution
from stcg_model.attribution.methods.chains import propagated, trace
from stcg_model.families.registry import family_for


@register_attribution
class Rollout(AttributionMethod):
    """Attention rollout extended to co-attention (Abnar & Zuidema 2020; Chefer et al. 2021's rules
    with ``Abar = mean_h A``). Gradient-free."""

    name = "rollout"
    description = "relevancy rules with Abar = head-mean attention (no gradients)"

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        t = trace(fam, batch)
        abar = t.rebuild([R.head_mean(m.double()) for m in t.tensors()])
        C, W, S = propagated(abar, batch)
        return [
            MethodMaps(self.name, region_from_steps(S[r], batch.is_eos[r]), C[r].double().cpu().numpy(), W[r], S[r])
            for r in range(len(batch))
        ]
