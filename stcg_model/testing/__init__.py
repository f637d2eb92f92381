"""Fixtures for tests and benchmarks, apart from the product: ``tiny`` (tiny random BLIP-2 models of the
real classes) and ``synthetic`` (model-shaped ``STCGraph``s without a model)."""
