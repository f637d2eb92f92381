"""``EngineConfig``: every setting of the STCG engine, in one typed, validated place.

The command line (``stcg explain``, ``stcg ingest``: one shared set of options), the ingestion
pipeline (``IngestConfig`` holds one, and a run's identity is built from it) and the engine
(``STCGEngine.from_config``) all take this object, so a setting has one name, one default and one
meaning everywhere. ``validate()`` checks every value against its range before any model work; given
the model (or just its config, which loads without weights) it also checks what depends on the model:
layer indices, top-k and deletion steps against the number of regions, float16 for T5.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from stcg.errors import StcgError

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _model_config(model: Any):
    """The config of a ``LoadedModel``, a transformers model, or the config itself."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "config"):
        return inner.config
    return model.config if hasattr(model, "config") and not hasattr(model, "qformer_config") else model


@dataclass(frozen=True)
class EngineConfig:
    """What the engine computes with (units and meaning of each field below; defaults are the CLI's).

    ``top_k`` has one meaning everywhere: the region links kept per token, per answer step and per
    ``dW`` row (token x perturbation) in the graph; ``stcg explain`` prints and outlines the same
    number of strongest regions per word.
    """

    model: str | None = None  # hub id or checkpoint folder; None = the embedded demo model (else the hub default)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N (any torch device)
    dtype: str = "auto"  # auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16 (not for T5)
    perturbations: str | tuple = "all"  # "all" or "kind[:k=v;k=v],..." (or a tuple of PerturbationSpec)
    layers: str = "mean"  # layer aggregation per hook point: mean | last | indices "0,-1" (mean of those)
    prompt: str | None = None  # template with {question} once; None = the question (T5) / BLIP-2's VQA prompt (OPT)
    seed: int = 0  # >= 0: perturbations, the deletion curve's random order (ingest: also --sample)
    max_new_tokens: int = 10  # >= 1: greedy answer length limit (answer steps, </s> included)
    deletion_steps: int = 10  # 0 (off) .. regions: deletion-curve steps per example
    top_k: int = 5  # 1 .. regions: region links kept per token / step / dW row
    attributions: str = "attention"  # "attention", "all" or comma-separated method names (docs/spec.md section 6)
    masks: bool = False  # the examples carry ground-truth masks (set from the dataset): offers oracle and random

    # ------------------------------------------------------------------ derived
    def perturbation_specs(self) -> list:
        """The parsed ``PerturbationSpec`` list (each parameter checked against its range)."""
        from stcg_model.perturbations import PerturbationSpec, parse_perturbations

        if isinstance(self.perturbations, str):
            return parse_perturbations(self.perturbations)
        specs = [s if isinstance(s, PerturbationSpec) else PerturbationSpec(*s) for s in self.perturbations]
        for s in specs:
            s.check()
        if len({s.kind for s in specs}) != len(specs):
            raise StcgError("each perturbation kind may appear once")
        return specs

    def attribution_names(self) -> list[str]:
        """The attribution methods to compute, ``attention`` first (unknown names: one-line error)."""
        from stcg_model.attribution.base import parse_attributions

        return parse_attributions(self.attributions, masks=self.masks)

    def layer_selection(self):
        from stcg_model.families.capture import LayerSelection

        return LayerSelection.parse(self.layers)

    @property
    def dtype_arg(self) -> str | None:
        """The dtype for ``load_model`` (None = automatic)."""
        return None if self.dtype in (None, "auto") else self.dtype

    def identity(self, model_name: str) -> dict:
        """The engine's part of an ingestion run's identity (what determines the numbers; not the
        device). Same keys and values as before ``EngineConfig`` existed, so run ids stay the same."""
        perts = (
            self.perturbations
            if isinstance(self.perturbations, str)
            else ",".join(
                s.kind + (":" + ";".join(f"{k}={v}" for k, v in sorted(s.params.items())) if s.params else "")
                for s in self.perturbation_specs()
            )
        )
        return {
            "model": model_name,
            "dtype": self.dtype_arg,
            "perturbations": perts,
            "layers": self.layers,
            "top_k": self.top_k,
            "deletion_steps": self.deletion_steps,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            **({"prompt": self.prompt} if self.prompt is not None else {}),
            # only when other methods are asked for, so the ids of attention-only runs stay as they were
            **({"attributions": self.attribution_names()} if self.attribution_names() != ["attention"] else {}),
        }

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # ------------------------------------------------------------------ validation
    def validate(self, model: Any = None) -> EngineConfig:
        """This config, or a one-line ``StcgError`` naming the first bad value and its allowed range.

        ``model``: a ``LoadedModel``, a BLIP-2 model, or its ``Blip2Config`` (``loading.checkpoint_config``
        reads it without the weights); with it, layer indices, ``top_k``, ``deletion_steps``,
        ``max_new_tokens`` and the dtype are also checked against that model.
        """
        if not _is_int(self.seed) or self.seed < 0:
            raise StcgError(f"--seed {self.seed!r} is invalid; allowed: an integer >= 0")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise StcgError(f"--max-new-tokens {self.max_new_tokens!r} is invalid; allowed: an integer >= 1")
        if not _is_int(self.deletion_steps) or self.deletion_steps < 0:
            raise StcgError(
                f"--deletion-steps {self.deletion_steps!r} is invalid; allowed: 0 (off) up to the number of regions"
            )
        if not _is_int(self.top_k) or self.top_k < 1:
            raise StcgError(f"--top-k {self.top_k!r} is invalid; allowed: 1 up to the number of regions")
        if self.dtype not in DTYPES:
            raise StcgError(f"unknown --dtype {self.dtype!r}; use one of auto, float32, bfloat16, float16")
        self._check_device()
        if self.prompt is not None:
            from stcg_model.families.inputs import check_prompt

            check_prompt(self.prompt)
        self.perturbation_specs()
        self.attribution_names()
        layers = self.layer_selection()
        if model is not None:
            self._check_model(_model_config(model), layers)
        return self

    def _check_device(self) -> None:
        if self.device == "auto":
            return
        import torch

        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            dev = None
        if dev is None:
            raise StcgError(f"unknown --device {self.device!r}; use auto, cpu, cuda or cuda:N")

    def _check_model(self, cfg, layers) -> None:
        from stcg_model.families.registry import family_of

        family = family_of(cfg).impl()
        layers.check(family.hook_layer_counts(cfg))
        side = family.grid_side(cfg)
        regions = None if side is None else side**2  # None: each image has its own grid (Qwen-VL)
        if regions is not None and self.top_k > regions:
            raise StcgError(f"--top-k {self.top_k} is larger than the model's {regions} regions; allowed: 1..{regions}")
        if regions is not None and self.deletion_steps > regions:
            raise StcgError(
                f"--deletion-steps {self.deletion_steps} is more than the model's {regions} regions; "
                f"allowed: 0 (off)..{regions}"
            )
        tc = cfg.text_config
        if not tc.is_encoder_decoder:
            limit = int(getattr(tc, "max_position_embeddings", 0) or 0) - (family.image_slots(cfg) or 0) - 1
            if limit > 0 and self.max_new_tokens > limit:
                raise StcgError(
                    f"--max-new-tokens {self.max_new_tokens} does not fit the language model's "
                    f"{tc.max_position_embeddings} positions; allowed: 1..{limit}"
                )
        elif self.dtype in ("float16", "fp16"):
            raise StcgError(
                "float16 is refused for T5 language models (Flan-T5 overflows in fp16); use bfloat16 or float32"
            )


def check_count(option: str, value: Any, minimum: int = 1) -> None:
    """One-line ``StcgError`` unless ``value`` is None or an integer >= ``minimum`` (e.g. --limit, --batch-size)."""
    if value is None:
        return
    if not _is_int(value) or value < minimum:
        raise StcgError(f"{option} {value!r} is invalid; allowed: an integer >= {minimum}")


__all__ = ["EngineConfig", "check_count", "DTYPES"]
