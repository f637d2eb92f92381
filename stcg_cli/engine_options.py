"""The engine's command-line options, shared by ``stcg explain`` and ``stcg ingest``.

One decorator (``engine_options``) adds them; ``engine_config`` turns the parsed values into the one
``EngineConfig`` (``stcg_model.engine.engine_config``), so both commands spell, default and check them alike.
"""

from __future__ import annotations

import click

from stcg_model.engine.engine_config import EngineConfig


class RegistryHelpOption(click.Option):
    """An option whose help text a registry writes when ``--help`` is shown (``help_from()``), so the
    command line imports no registry (nor torch) just to start."""

    def __init__(self, *args, help_from, **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx):
        self.help = self.help_from()
        return super().get_help_record(ctx)


MODEL_DEFAULT = (
    "[default: the embedded scenes model for --dataset scenes, the embedded demo model otherwise, "
    "else Salesforce/blip2-flan-t5-xl]"
)


def model_help() -> str:
    """``--model``'s help: the supported model families, from their registry (no torch imported)."""
    from stcg_model.families.registry import supported

    return (
        f"A checkpoint, hub id or local folder, of a supported model family: {supported()}; or a shipped one: demo "
        f"(BLIP-2, easy-VQA), scenes (BLIP-2) or scenes-llava (LLaVA), both trained on the scenes testbed "
        f"{MODEL_DEFAULT}."
    )


def attributions_help() -> str:
    from stcg_model.attribution.base import attributions_help as from_registry

    return from_registry()


ENGINE_OPTION_NAMES = (
    "model",
    "device",
    "dtype",
    "perturbations",
    "layers",
    "prompt",
    "seed",
    "max_new_tokens",
    "deletion_steps",
    "top_k",
    "attributions",
)

_DEFAULT = EngineConfig()


def engine_options(f):
    """Add --model, --device, --dtype, --perturbations, --layers, --prompt, --seed, --max-new-tokens,
    --deletion-steps, --top-k and --attributions (defaults: ``EngineConfig``'s)."""
    options = [
        click.option(
            "--model",
            default=_DEFAULT.model,
            cls=RegistryHelpOption,
            help_from=model_help,
        ),
        click.option(
            "--device",
            default=_DEFAULT.device,
            show_default=True,
            help="Where the model runs: auto (cuda if available), cpu, cuda, cuda:N.",
        ),
        click.option(
            "--dtype",
            default=_DEFAULT.dtype,
            show_default=True,
            help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16 (refused for T5).",
        ),
        click.option(
            "--perturbations",
            default=_DEFAULT.perturbations,
            show_default=True,
            help="'all' or comma-separated kinds, each optionally kind:param=value;param=value "
            "(e.g. center_mask:fraction=0.3,gaussian_noise:sigma=0.05).",
        ),
        click.option(
            "--layers",
            default=_DEFAULT.layers,
            show_default=True,
            help="Layer aggregation per attention family: mean, last, or comma-separated layer indices.",
        ),
        click.option(
            "--prompt",
            default=_DEFAULT.prompt,
            help="Prompt around the question, with {question} once "
            '[default: the question for T5, "Question: {question} Answer:" for OPT].',
        ),
        click.option(
            "--seed",
            default=_DEFAULT.seed,
            show_default=True,
            type=int,
            help="Seed (>= 0) of the perturbations and the deletion curve's random order (ingest: also of --sample).",
        ),
        click.option(
            "--max-new-tokens",
            default=_DEFAULT.max_new_tokens,
            show_default=True,
            type=int,
            help="Longest answer, in tokens (>= 1).",
        ),
        click.option(
            "--deletion-steps",
            default=_DEFAULT.deletion_steps,
            show_default=True,
            type=int,
            help="Deletion-curve steps per example (0 turns it off; at most the model's regions).",
        ),
        click.option(
            "--top-k",
            default=_DEFAULT.top_k,
            show_default=True,
            type=int,
            help="Region links kept per token / answer step / dW row (explain: strongest regions "
            "printed and outlined per word); at most the model's regions.",
        ),
        click.option(
            "--attributions",
            default=_DEFAULT.attributions,
            show_default=True,
            cls=RegistryHelpOption,
            help_from=attributions_help,
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def engine_config(options: dict) -> EngineConfig:
    """Pop the engine options out of a command's keyword arguments into an ``EngineConfig`` (not yet
    validated: ``validate`` runs where the model's config is at hand)."""
    return EngineConfig(**{name: options.pop(name) for name in ENGINE_OPTION_NAMES})


__all__ = ["engine_options", "engine_config", "ENGINE_OPTION_NAMES"]
