"""Seeded randomness: one ``numpy.random.Generator`` per (seed, example key, purpose), so every random
choice of a run (a perturbation's noise, the random deletion order) is reproducible and independent
of the order in which examples are processed."""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, example_key: str, kind: str) -> np.random.Generator:
    """The generator of ``kind`` (a perturbation name, ``deletion_random``) for one example."""
    return np.random.default_rng([seed, zlib.crc32(example_key.encode()), zlib.crc32(kind.encode())])
