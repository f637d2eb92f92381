"""Attribution methods: how much each image region explains the answer (docs/spec.md section 6).

Importing the package (which Python does before any of its modules) imports ``methods``, which
registers every built-in method, so the registry in ``base`` is complete whichever module a caller
imports first.
"""

from stcg_model.attribution import methods  # noqa: F401  (register the built-ins, in order)
