"""Model-randomisation sanity check (Adebayo et al. 2018; docs/spec.md section 7).

A method's region attribution on the trained model is compared (Spearman correlation per example)
with its attribution on a copy whose language model and Q-Former are re-initialised, cascading
from the top layer down: stage 1 re-initialises the layer nearest the answer, each later stage one
more layer below it, the last stage all of them (and the projection between them). A method whose
attribution barely changes is not explaining the model: lower ``|rho|`` passes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from stcg_model.families.registry import family_for


def cascade(model) -> list[torch.nn.Module]:
    """The model's re-initialisation order, top layer first, as its family defines it
    (``stcg_model.families.blip2.family.cascade`` for BLIP-2)."""
    return family_for(model.config).cascade(model)


def randomised_copy(lm, stages: int | None = None, seed: int = 0):
    """A ``LoadedModel`` copy whose first ``stages`` modules of ``cascade`` (all when None) are
    re-initialised with the model's own ``_init_weights``, seeded. The original is untouched."""
    out = copy.copy(lm)
    out.model = copy.deepcopy(lm.model)
    modules = cascade(out.model)
    modules = modules if stages is None else modules[: int(stages)]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            inner_lm = getattr(out.model, "language_model", None)  # BLIP-2's own; LLaVA's top model inits all
            for m in modules:
                owner = inner_lm if inner_lm is not None and _inside(m, inner_lm) else out.model
                for sub in m.modules():
                    owner._init_weights(sub)
            if stages is None and hasattr(out.model, "query_tokens"):  # a Q-Former's learned queries
                out.model.query_tokens.normal_(0.0, out.model.config.initializer_range)
    finally:
        torch.random.set_rng_state(gen_state)
    return out


def _inside(module: torch.nn.Module, parent: torch.nn.Module) -> bool:
    return any(module is m for m in parent.modules())


def rank_correlations(trained: Sequence[np.ndarray], randomised: Sequence[np.ndarray]) -> np.ndarray:
    """Per example, Spearman's rho between the two region attributions (NaN when one is constant)."""
    out = []
    for a, b in zip(trained, randomised):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        out.append(float("nan") if np.ptp(a) == 0 or np.ptp(b) == 0 else float(stats.spearmanr(a, b).statistic))
    return np.asarray(out)
