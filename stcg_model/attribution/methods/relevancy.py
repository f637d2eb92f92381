"""``relevancy``: gradient-weighted relevancy propagation (Chefer, Gur, Wolf, ICCV 2021; docs/spec.md section 6)."""

from __future__ import annotations

import numpy as np
import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionMethod, MethodMaps, region_from_steps, register_attribution
from stcg_model.attribution.methods.chains import propagated, step_gradients, traced_with_grad
from stcg_model.families.registry import family_for


@register_attribution
class Relevancy(AttributionMethod):
    """Chefer, Gur, Wolf (ICCV 2021): gradient-weighted relevancy, ``Abar = mean_h (grad A * A)+``.

    The gradient is of the answer token's pre-softmax logit, as the reference code backpropagates a
    one-hot of the output logits (docs/spec.md section 6; ``relevancy_logp`` takes log p instead). ``W`` and
    ``C`` use the sum over the answer's tokens; row ``t`` of ``S`` token ``t``'s alone. One backward
    per answer step over the whole batch."""

    name = "relevancy"
    needs_gradients = True
    target = "logit"
    description = "gradient-weighted relevancy propagation (Chefer et al. 2021), target: the answer logit"

    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        with torch.enable_grad():  # callers (the engine) may run under no_grad
            t = traced_with_grad(fam, batch)
            maps = [m.detach().double() for m in t.tensors()]
            per_step = step_gradients(t, self.target)
        with torch.no_grad():
            total = [sum(g[i] for g in per_step).double() for i in range(len(maps))]
            abar_all = t.rebuild([R.grad_weighted(m, g) for m, g in zip(maps, total)])
            C, W, _ = propagated(abar_all, batch)
            S_rows = [[None] * len(a) for a in batch.answers]
            for step, grads in enumerate(per_step):
                abar = t.rebuild([R.grad_weighted(m, g.double()) for m, g in zip(maps, grads)])
                _, _, S_step = propagated(abar, batch)
                for r, a in enumerate(batch.answers):
                    if step < len(a):
                        S_rows[r][step] = S_step[r][step]
        out = []
        for r in range(len(batch)):
            S = np.stack(S_rows[r])
            out.append(
                MethodMaps(self.name, region_from_steps(S, batch.is_eos[r]), C[r].double().cpu().numpy(), W[r], S)
            )
        return out
