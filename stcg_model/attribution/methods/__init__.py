"""The built-in attribution methods, one per file, registered by name in this order (the order of
``--attributions all`` and of a graph's methods): attention, rollout, relevancy, gradcam, occlusion, the
two options relevancy_logp and gradcam_logp, and the references oracle and random (offered only with
ground-truth masks). A new method is one more file here and its module name in ``BUILTINS``.
"""

import importlib

BUILTINS = (
    "attention",
    "rollout",
    "relevancy",
    "gradcam",
    "occlusion",
    "relevancy_logp",
    "gradcam_logp",
    "oracle",
    "random_map",
)
"""The modules of the built-in methods, in registration order; importing one registers its method."""

for _module in BUILTINS:
    importlib.import_module(f"{__name__}.{_module}")
