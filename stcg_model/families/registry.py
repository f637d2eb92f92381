"""Model families by name, detected from a checkpoint's config (``config.model_type``).

A family is one folder under ``stcg_model/families/`` whose ``family.py`` is the interface the rest of
the platform calls (docs/extending.md):

    load(source, device, dtype) -> LoadedModel        the checkpoint, ready for attention capture
    weightless(config, source) -> LoadedModel         the architecture on the meta device + processor
    passes_for(lm, layers, max_new_tokens, pixels)    the batched passes and the traced forward
    hook_layer_counts(config) -> {hook point: layers} from the config alone (settings are checked early)
    grid_side(config) -> G | None                     the region grid side (P = G * G regions); None: per image
    image_slots(config) -> Q | None                   the language model's image slots; None: per image
    vision_tower(model) -> module                     run without autograd by the gradient methods
    cascade(model) -> [modules]                       the sanity check's re-initialisation order
    pixel_preprocessor(lm) -> callable (optional)     images -> a row-indexable pixel tensor, where the
                                                      processor's own (N, 3, H, W) is not it (Qwen-VL)
                                                      its ``grid_shape(width, height) -> (rows, cols)``
                                                      gives each image its grid when ``grid_side`` is None

``family_of(config)`` picks the family; a checkpoint of an architecture no family explains gets one
line naming the supported ones. A family is registered by one ``ModelFamily`` line (``BUILTINS`` here).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from stcg.errors import StcgError


@dataclass(frozen=True)
class ModelFamily:
    """A model family: its name (its folder), how people call it, the ``config.model_type`` values of its
    checkpoints, the transformers classes it explains, and the module implementing the interface."""

    name: str
    title: str
    model_types: tuple[str, ...]
    classes: tuple[str, ...]
    module: str

    def impl(self) -> ModuleType:
        """The family's interface module (imported on first use: torch and transformers come with it)."""
        return importlib.import_module(self.module)

    def describe(self) -> str:
        return f"{self.title} ({', '.join(self.classes)})"


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` (replacing one of the same name); a model type another family has: ``ValueError``."""
    for other in _FAMILIES.values():
        taken = set(other.model_types) & set(family.model_types)
        if other.name != family.name and taken:
            raise ValueError(f"model type(s) {sorted(taken)} already belong to the {other.name} family")
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove ``name`` (for tests that register a throw-away family)."""
    _FAMILIES.pop(name, None)


def model_families() -> list[ModelFamily]:
    """Every registered family, the built-ins first."""
    return list(_FAMILIES.values())


def supported() -> str:
    """``BLIP-2 (Blip2ForConditionalGeneration), ...``: what the platform explains, for messages and help."""
    return ", ".join(f.describe() for f in _FAMILIES.values())


def family_of(config, name: str | None = None) -> ModelFamily:
    """The family of a checkpoint's config (``AutoConfig``), by its ``model_type``; for any other, one-line
    ``StcgError`` naming the checkpoint (``name``), its architecture and the supported families."""
    model_type = getattr(config, "model_type", None)
    for family in _FAMILIES.values():
        if model_type in family.model_types:
            return family
    archs = ", ".join(getattr(config, "architectures", None) or []) or "unknown class"
    what = f"{name} is a {model_type or 'unknown'} checkpoint ({archs})" if name else f"a {model_type} model ({archs})"
    raise StcgError(f"{what}, which no model family here explains; supported: {supported()}")


def family_for(model) -> ModuleType:
    """The interface module of the family of ``model``: a ``LoadedModel``, a transformers model or a config."""
    inner = getattr(model, "model", None)
    config = inner.config if inner is not None and hasattr(inner, "config") else getattr(model, "config", model)
    return family_of(config).impl()


BUILTINS = (
    ModelFamily(
        "blip2",
        "BLIP-2",
        ("blip-2",),
        ("Blip2ForConditionalGeneration",),
        "stcg_model.families.blip2.family",
    ),
    ModelFamily(
        "instructblip",
        "InstructBLIP",
        ("instructblip",),
        ("InstructBlipForConditionalGeneration",),
        "stcg_model.families.instructblip.family",
    ),
    ModelFamily(
        "llava",
        "LLaVA / VipLlava",
        ("llava", "vipllava"),
        ("LlavaForConditionalGeneration", "VipLlavaForConditionalGeneration"),
        "stcg_model.families.llava.family",
    ),
    ModelFamily(
        "qwen_vl",
        "Qwen2-VL / Qwen2.5-VL",
        ("qwen2_vl", "qwen2_5_vl"),
        ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration"),
        "stcg_model.families.qwen_vl.family",
    ),
)
"""The built-in families, registered in this order."""

for _family in BUILTINS:
    register_family(_family)
