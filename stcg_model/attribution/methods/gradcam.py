"""``gradcam``: Grad-CAM on the Q-Former cross-attention (BLIP's ITM recipe; docs/spec.md section 6)."""

from __future__ import annotations

import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionMethod, MethodMaps, register_attribution
from stcg_model.attribution.methods.chains import raw_lm_maps, section2, traced_with_grad
from stcg_model.families.registry import family_for


@register_attribution
class GradCAM(AttributionMethod):
    """Grad-CAM on the Q-Former cross-attention (BLIP's ITM recipe): ``C = mean over layers of
    mean_h (grad A * A)+`` for the gradient of the answer tokens' summed pre-softmax logits (the class
    score before the softmax, as Grad-CAM takes it; ``gradcam_logp`` takes log p(answer)), CLS
    dropped, rows renormalised; ``W`` and ``S`` from it with the raw attention of section 2."""

    name = "gradcam"
    needs_gradients = True
    target = "logit"
    description = "Grad-CAM on the Q-Former cross-attention, target: the answer logit"

    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        with torch.enable_grad():  # callers (the engine) may run under no_grad
            t = traced_with_grad(fam, batch)
            cross = [c for c in t.qformer_cross if c is not None]
            score = (t.target(self.target) * t.step_mask).sum()
            grads = torch.autograd.grad(score, cross, allow_unused=True)
        with torch.no_grad():
            cams = [
                R.grad_weighted(c.double(), torch.zeros_like(c, dtype=torch.float64) if g is None else g.double())
                for c, g in zip(cross, grads)
            ]
            C_all = R.rows_normalised(torch.stack(cams).mean(0)[..., 1:])
            out = []
            for r in range(len(batch)):
                C = C_all[r].double().cpu().numpy()
                E, D = raw_lm_maps(t, batch, r)
                C, W, S, region = section2(C, E, D, batch.token_positions[r], batch.is_eos[r])
                out.append(MethodMaps(self.name, region, C, W, S))
        return out
