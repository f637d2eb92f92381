"""Pure maths of the STCG (docs/spec.md sections 2, 5-7): numpy arrays in, arrays out; no torch, no I/O.

``alignment`` (row-stochastic maps, W, S, dW, entropy), ``regions`` (the region grid, one ``auc``, one
``top_k_mass``), ``text`` (word grouping, answer normalisation), ``faithfulness`` (deletion/insertion
plans and scores), ``grounding`` (ground-truth mask metrics), ``seeding`` (one generator per purpose).
"""

from stcg_model.maths.alignment import drift, entropy_bits, js_divergence, spatial_spread, structural, temporal
from stcg_model.maths.faithfulness import faithfulness_scores
from stcg_model.maths.grounding import grounding_scores, mass_accuracy, pointing_game, rank_accuracy
from stcg_model.maths.regions import RegionGrid, auc, top_fraction, top_k_mass
from stcg_model.maths.seeding import rng_for
from stcg_model.maths.text import group_tokens, normalize_answer, vqa_accuracy

__all__ = [
    "RegionGrid",
    "auc",
    "drift",
    "entropy_bits",
    "faithfulness_scores",
    "grounding_scores",
    "group_tokens",
    "js_divergence",
    "mass_accuracy",
    "normalize_answer",
    "pointing_game",
    "rank_accuracy",
    "rng_for",
    "spatial_spread",
    "structural",
    "temporal",
    "top_fraction",
    "top_k_mass",
    "vqa_accuracy",
]
