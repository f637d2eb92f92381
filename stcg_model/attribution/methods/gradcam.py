"""``gradcam``: Grad-CAM on the Q-Former cross-attention (BLIP's ITM recipe; docs/spec.md section 6)."""

from __future__ import annotations

import numpy as np
import torch

from stcg_model.attribution import propagation as R
from stcg_model.attribution.base import AttributionMethod, MethodMaps, register_attribution
from stcg_model.attribution.methods.chains import cam_lm_maps, raw_lm_maps, section2, slots_of, traced_with_grad
from stcg_model.families.registry import family_for


@register_attribution
class GradCAM(AttributionMethod):
    """Grad-CAM on the Q-Former cross-attention (BLIP's ITM recipe): ``C = mean over layers of
    mean_h (grad A * A)+`` for the gradient of the answer tokens' summed pre-softmax logits (the class
    score before the softmax, as Grad-CAM takes it; ``gradcam_logp`` takes log p(answer)), CLS
    dropped, rows renormalised; ``W`` and ``S`` from it with the raw attention of section 2.
    Without a Q-Former (LLaVA) the map is taken on the language model's self-attention: ``W`` and ``S``
    are section 2 with the layer mean of ``mean_h (grad A * A)+`` in place of the raw ``E`` and ``D``
    (its rows of the question tokens and answer steps over the image slots), ``C`` the identity."""

    name = "gradcam"
    needs_gradients = True
    target = "logit"
    description = "Grad-CAM on the Q-Former cross-attention (no Q-Former: the LM attention to the image), target: the answer logit"

    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        with torch.enable_grad():  # callers (the engine) may run under no_grad
            t = traced_with_grad(fam, batch)
            # the Q-Former's cross-attention where there is one, else the language model's self-attention
            maps = [c for c in t.qformer_cross if c is not None] if t.has_qformer else list(t.lm_self)
            score = (t.target(self.target) * t.step_mask).sum()
            grads = torch.autograd.grad(score, maps, allow_unused=True)
        with torch.no_grad():
            cams = [
                R.grad_weighted(c.double(), torch.zeros_like(c, dtype=torch.float64) if g is None else g.double())
                for c, g in zip(maps, grads)
            ]
            cam = torch.stack(cams).mean(0)
            C_all = R.rows_normalised(cam[..., 1:]) if t.has_qformer else None
            out = []
            for r in range(len(batch)):
                slots = slots_of(t, r)
                if t.has_qformer:
                    C = C_all[r].double().cpu().numpy()
                    E, D = raw_lm_maps(t, batch, r)
                else:  # the map of the language model's attention to the image slots; slot k is region k
                    C = np.eye(len(slots))
                    E, D = cam_lm_maps(cam, batch, r)
                C, W, S, region = section2(C, E, D, batch.token_positions[r], batch.is_eos[r], slots)
                out.append(MethodMaps(self.name, region, C, W, S))
        return out
