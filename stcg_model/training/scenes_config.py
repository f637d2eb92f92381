"""``ScenesConfig``: architecture and optimisation of the scenes model (``stcg train-scenes``).

Kept apart from the trainer so that the command line reads its defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from stcg import scenes


@dataclass
class ScenesConfig:
    """Architecture and optimisation of the scenes model (defaults: the shipped checkpoint)."""

    image_size: int = scenes.SIZE
    patch_size: int = 8  # -> an 8 x 8 grid of 64 regions, like the demo model
    num_query_tokens: int = 16
    hidden: int = 128
    layers: int = 3
    qformer_layers: int = 2
    heads: int = 4
    train_scenes: int = 30_000  # examples 0..N-1 of the scenes train split (one question each)
    vision_steps: int = 1200  # stage 1: per-region labels
    vision_lr: float = 5e-4
    vision_batch_size: int = 128
    steps: int = 1200  # stage 2: Q-Former + T5 on the questions, ViT frozen
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 300
    weight_decay: float = 0.01
    relation_steps: int = 800  # stage 3, the relation phase: relation_share relation questions, constant lr
    relation_batch_size: int = 128
    relation_share: float = 0.5  # share of a stage-3 batch drawn from the relation questions (the rest: any)
    relation_lr: float = 1e-3
    settle_steps: int = 600  # stage 4: all questions, batch relation_batch_size, lr cosine from relation_lr to 0
    layout_weight: float = 1.0  # stages 2-4: weight of the layout loss (the queries redraw the region map); 0: off
    grounding_weight: float = 1.0  # stages 2-4: weight of the grounding loss (words find their objects); 0: off
    dropout: float = 0.0  # Q-Former and T5 dropout (transformers' default is 0.1)
    seed: int = 0


@dataclass
class ScenesLlavaConfig:
    """Architecture and optimisation of the LLaVA-family scenes model (``stcg train-scenes --family llava``):
    a CLIP vision tower, an MLP projector and a Llama language model, one language-model slot per 8 x 8 px
    region (defaults: the shipped checkpoint)."""

    image_size: int = scenes.SIZE
    patch_size: int = 8  # -> the same 8 x 8 grid of 64 regions as the BLIP-2 scenes model
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    train_scenes: int = 30_000
    vision_steps: int = 1200  # stage 1: per-region labels (as the BLIP-2 scenes model's)
    vision_lr: float = 5e-4
    vision_batch_size: int = 128
    steps: int = 1200  # stage 2: projector + language model on the questions, ViT frozen
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 300
    weight_decay: float = 0.01
    relation_steps: int = 800  # stage 3: relation_share relation questions per batch, constant lr
    relation_batch_size: int = 128
    relation_share: float = 0.5
    relation_lr: float = 1e-3
    settle_steps: int = 800  # stage 4: all questions, lr cosine from relation_lr to 0
    grounding_weight: float = 1.0  # question words find their objects (0: off; docs/demo-model.md)
    grounding_layer: int = -1  # hidden states the grounding head reads (-1: the last layer's)
    grounding_stages: tuple[str, ...] = ("stage 2", "stage 3")  # a curriculum: off while settling
    seed: int = 0
