"""Load any supported checkpoint (hub id or local folder) ready for attention capture, family-blind: the
checkpoint's config picks its model family (``stcg_model.families.registry``), which loads it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from stcg.errors import StcgError
from stcg_model.families.registry import family_of

HUB_DEFAULT = "Salesforce/blip2-flan-t5-xl"
DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "demo_model"
SCENES_MODEL_DIR = Path(__file__).resolve().parents[1] / "scenes_model"
SCENES_LLAVA_DIR = Path(__file__).resolve().parents[1] / "scenes_llava"
"""The LLaVA-family scenes model (``stcg train-scenes --family llava``), for comparing two families."""


def model_fingerprint(name_or_path: str) -> str:
    """A short content hash of a local checkpoint folder (config + the first and last MiB and the size
    of every weight file), so results of a retrained checkpoint in the same folder are told apart.
    A hub id (no local folder) is its own fingerprint."""
    import hashlib

    folder = Path(embedded(name_or_path)).expanduser()
    h = hashlib.sha1()
    if not folder.is_dir():
        h.update(name_or_path.encode())
        return h.hexdigest()[:12]
    for f in sorted(folder.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt"):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


EMBEDDED = {"demo": DEMO_MODEL_DIR, "scenes": SCENES_MODEL_DIR, "scenes-llava": SCENES_LLAVA_DIR}
"""Names of the checkpoints shipped with the package (``--model scenes-llava``), resolved to their folders."""


def embedded(name: str) -> str:
    """The folder of a shipped checkpoint's name (``EMBEDDED``), else ``name`` unchanged (a local folder of
    that name wins)."""
    folder = None if Path(name).exists() else EMBEDDED.get(name)
    return str(folder) if folder is not None and (folder / "config.json").is_file() else name


def default_model(dataset: str | None = None) -> str:
    """The embedded checkpoint for ``dataset`` when shipped (the scenes model for ``scenes[:N]``, the
    easy-VQA demo model otherwise), else the hub default."""
    if dataset is not None and dataset.partition(":")[0] == "scenes" and (SCENES_MODEL_DIR / "config.json").is_file():
        return str(SCENES_MODEL_DIR)
    return str(DEMO_MODEL_DIR) if (DEMO_MODEL_DIR / "config.json").is_file() else HUB_DEFAULT


@dataclass
class LoadedModel:
    """A model in eval mode (eager attention where weights are captured), its processor, and where it runs."""

    model: torch.nn.Module  # e.g. Blip2ForConditionalGeneration
    processor: object  # its processor (tokenizer + image processor)
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.config.text_config.is_encoder_decoder)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StcgError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, is_t5: bool) -> torch.dtype:
    """bfloat16 on GPU, float32 on CPU; float16 refused for T5 language models (they overflow)."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    resolved = dtype if isinstance(dtype, torch.dtype) else table.get(str(dtype))
    if resolved is None:
        raise StcgError(f"unknown dtype {dtype!r}; use one of auto, float32, bfloat16, float16")
    if resolved == torch.float16 and is_t5:
        raise StcgError(
            "float16 is refused for T5 language models (Flan-T5 overflows in fp16); use bfloat16 or float32"
        )
    return resolved


def placed(model, processor, name: str, device, dtype, use_capture_attention) -> LoadedModel:
    """An already built ``model`` on its device (``resolve_device``) and dtype (``resolve_dtype``) in eval mode,
    with the family's capture attention (``use_capture_attention(model)``), as a ``LoadedModel``."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, bool(model.config.text_config.is_encoder_decoder))
    use_capture_attention(model)
    return LoadedModel(
        model=model.to(device=dev, dtype=dt).eval(), processor=processor, name=name, device=dev, dtype=dt
    )


def _where(name: str) -> tuple[Path, str]:
    """(local path, what to pass to ``from_pretrained``) of a hub id, folder or shipped name; one-line errors."""
    name = embedded(name)
    local = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep == "\\" and "\\" in name
    if looks_local and not local.exists():
        raise StcgError(f"model folder not found: {name}")
    if local.is_dir() and not (local / "config.json").is_file():
        raise StcgError(f"{name} is not a checkpoint folder (no config.json)")
    return local, str(local) if local.exists() else name


def _load_error(name: str, local: Path, e: Exception) -> StcgError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = "local folder" if local.exists() else "hub id (needs network access or a cached copy)"
    return StcgError(f"could not load model {name!r} ({where}): {first[:240]}")


def checkpoint_config(name_or_path: str | None = None):
    """The config of a checkpoint (config.json only, no weights), so settings that depend on the model
    (layer indices, regions) are checked before any model work; one-line ``StcgError`` for a checkpoint
    that cannot be read or whose architecture no model family explains."""
    name = name_or_path or default_model()
    local, source = _where(name)
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise _load_error(name, local, e) from None
    family_of(cfg, name)
    return cfg


def load_model(name_or_path: str | None = None, device: str = "auto", dtype: str | None = None) -> LoadedModel:
    """The checkpoint's model and processor, loaded by its family (``from_pretrained``); one-line ``StcgError``
    when it cannot load."""
    name = name_or_path or default_model()
    local, source = _where(name)
    dev = resolve_device(device)
    try:
        cfg = checkpoint_config(name)
        dt = resolve_dtype(dtype, dev, bool(cfg.text_config.is_encoder_decoder))
        return family_of(cfg).impl().load(source, dev, dt, name)
    except StcgError:
        raise
    except (OSError, ValueError) as e:
        raise _load_error(name, local, e) from None


def weightless_model(name_or_path: str) -> LoadedModel:
    """The checkpoint's architecture on the ``meta`` device (no weights read) with its processor, on the CPU
    in float32: what host work (preprocessing, perturbations) needs of a model, e.g. in Ray's read tasks."""
    local, source = _where(name_or_path)
    cfg = checkpoint_config(name_or_path)
    return family_of(cfg).impl().weightless(cfg, source, name_or_path)
