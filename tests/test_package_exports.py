"""Subpackages export their public names from ``__init__`` lazily: the names resolve to the defining
modules' objects, and the command line still starts without importing torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

LAZY = ("stcg_model.engine", "stcg_model.families", "stcg_model.statistics", "stcg_model.training")


@pytest.mark.parametrize("package", LAZY)
def test_every_exported_name_is_the_defining_modules_object(package):
    pkg = importlib.import_module(package)
    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS) and set(pkg._EXPORTS) <= set(dir(pkg))
    for name, module in pkg._EXPORTS.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pkg.nope  # noqa: B018


def test_the_command_line_and_the_light_modules_start_without_torch():
    code = (
        "import sys, stcg_cli.main, stcg_model.engine.engine_config, stcg_model.training.scenes_config, "
        "stcg_model.statistics.metrics, stcg_model.maths; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
