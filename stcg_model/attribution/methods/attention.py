"""``attention``: raw attention, head- and layer-mean, through section 2 (docs/spec.md section 6)."""

from __future__ import annotations

import numpy as np
import torch

from stcg_model.attribution.base import AttributionMethod, MethodMaps, register_attribution
from stcg_model.attribution.methods.chains import layer_mean, raw_lm_maps, section2, slots_of, trace
from stcg_model.families.registry import family_for
from stcg_model.maths import alignment as A


@register_attribution
class Attention(AttributionMethod):
    """Raw attention (section 2): head- and layer-mean maps through ``W = a C`` and ``S = b C``.

    The engine's own arrays are this method's values in ingestion and ``stcg explain``; computed
    standalone it equals them to float precision (all layers, ``--layers mean``)."""

    name = "attention"
    description = "raw attention (head and layer mean), section 2"

    @torch.no_grad()
    def compute(self, lm, batch):
        fam = family_for(lm).passes_for(lm)
        t = trace(fam, batch)
        cross = layer_mean([c for c in t.qformer_cross if c is not None]) if t.has_qformer else None
        out = []
        for r in range(len(batch)):
            if cross is not None:
                C = A.query_region_attention(cross[r].double().cpu().numpy())
            else:  # no Q-Former: slot k is region k
                C = np.eye(len(t.slots[r]))
            E, D = raw_lm_maps(t, batch, r)
            C, W, S, region = section2(C, E, D, batch.token_positions[r], batch.is_eos[r], slots_of(t, r))
            out.append(MethodMaps(self.name, region, C, W, S))
        return out
