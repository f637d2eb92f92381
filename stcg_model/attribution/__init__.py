"""Attribution methods: how much each image region explains the answer (docs/spec.md section 6).

Importing the package (which Python does before any of its modules) registers the built-in methods,
so the registry in ``base`` is complete whichever module a caller imports first.
"""

from stcg_model.attribution import methods, reference  # noqa: F401  (register the built-ins, in order)
