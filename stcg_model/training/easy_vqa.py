"""Train the embedded demo model: a small ``Blip2ForConditionalGeneration`` (T5 language model) on easy-VQA.

The result is an ordinary checkpoint folder (``config.json``, ``model.safetensors``, processor and
tokenizer files) that ``Blip2ForConditionalGeneration.from_pretrained`` and
``Blip2Processor.from_pretrained`` load like any hub checkpoint.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stcg_model.families.blip2.configs import blip2_config, build_model
from stcg_model.training.tokenizer import build_word_tokenizer, make_processor


@dataclass
class DemoConfig:
    """Architecture and optimisation of the demo model (defaults: the shipped checkpoint)."""

    image_size: int = 64  # easy-VQA images are 64 x 64
    patch_size: int = 8  # -> an 8 x 8 grid of 64 regions
    num_query_tokens: int = 8
    hidden: int = 128
    layers: int = 3  # ViT layers and T5 encoder/decoder layers each
    qformer_layers: int = 2
    heads: int = 4
    vision_steps: int = 1000  # stage 1: the ViT learns shape and colour of each training image
    vision_lr: float = 5e-4
    freeze_vision: bool = True  # stage 2 keeps the ViT frozen, as BLIP-2 does with its pretrained ViT
    steps: int = 4000  # stage 2: Q-Former + language model on the questions
    batch_size: int = 64  # questions per step
    questions_per_image: int = (
        2  # a step sees batch_size / questions_per_image images; the vision tower runs once per image
    )
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    seed: int = 0


def _load_pixels(processor, paths: list[str]) -> torch.Tensor:
    from stcg.images import open_image

    images = [open_image(p) for p in paths]
    out = []
    for s in range(0, len(images), 512):
        out.append(processor.image_processor(images=images[s : s + 512], return_tensors="pt")["pixel_values"])
    return torch.cat(out)


def encode_questions(tokenizer, questions: list[str], Q: int, image_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(questions, padding=True, return_tensors="pt")
    ids = torch.cat([torch.full((len(questions), Q), image_token_id), enc["input_ids"]], 1)
    am = torch.cat([torch.ones((len(questions), Q), dtype=torch.long), enc["attention_mask"]], 1)
    return ids, am


def encode_answers(tokenizer, answers: list[str]) -> torch.Tensor:
    enc = tokenizer(answers, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    return labels


def _forward_shared_images(model, pixel_values, per_image: int, input_ids, attention_mask, labels, image_token_id: int):
    """``model(...)`` for ``per_image`` questions per image, running the vision tower and Q-Former once per image.

    pixel_values (N, 3, H, W); input_ids / attention_mask / labels hold N * per_image rows, image-major.
    Equals ``Blip2ForConditionalGeneration.forward`` on the repeated images (same loss and logits).
    """
    feats = model.get_image_features(pixel_values, return_dict=True).pooler_output  # (N, Q, d_lm)
    feats = feats.repeat_interleave(per_image, dim=0)
    embeds = model.get_input_embeddings()(input_ids)
    mask = (input_ids == image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
    return model.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, return_dict=True)


SHAPES = ("circle", "rectangle", "triangle")


def image_labels(
    train, path_index: dict[str, int], n_images: int, answers: list[str]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per training image, its shape and colour class read off the answers of its own questions.

    Returns shape (N,) in SHAPES order, colour (N,) indices into the returned colour names; -100 where
    no question of that image names it.
    """
    colours = sorted({a for a in answers if a not in SHAPES and a not in ("yes", "no")})
    shape = torch.full((n_images,), -100)
    colour = torch.full((n_images,), -100)
    for e in train:
        i = path_index[e.image_path]
        if e.answer in SHAPES:
            shape[i] = SHAPES.index(e.answer)
        elif e.answer in colours:
            colour[i] = colours.index(e.answer)
    return shape, colour, colours


def pretrain_vision(
    vision,
    pixels: torch.Tensor,
    shape: torch.Tensor,
    colour: torch.Tensor,
    n_colours: int,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str,
    progress: bool = True,
) -> dict:
    """Stage 1: the ViT (mean of its patch outputs -> two linear heads) learns each image's shape and colour.

    Plays the part of BLIP-2's pretrained image encoder; the heads are thrown away afterwards.
    Returns the final training accuracies.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    d = vision.config.hidden_size
    heads = torch.nn.ModuleDict({"shape": torch.nn.Linear(d, len(SHAPES)), "colour": torch.nn.Linear(d, n_colours)}).to(
        device
    )
    params = [*vision.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    vision.train()
    ema = {"shape": None, "colour": None}
    bar = tqdm(range(steps), desc="train-demo: vision", disable=not progress)
    for step in bar:
        b = torch.randint(0, len(pixels), (batch_size,), generator=gen)
        pooled = vision(pixel_values=pixels[b].to(device)).last_hidden_state[:, 1:].mean(1)
        loss = 0.0
        for name, target in (("shape", shape[b].to(device)), ("colour", colour[b].to(device))):
            logits = heads[name](pooled)
            if (target != -100).any():
                loss = loss + torch.nn.functional.cross_entropy(logits, target, ignore_index=-100)
                ok = (logits.argmax(-1) == target)[target != -100].float().mean().item()
                ema[name] = ok if ema[name] is None else 0.95 * ema[name] + 0.05 * ok
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(shape=f"{ema['shape'] or 0:.3f}", colour=f"{ema['colour'] or 0:.3f}")
    vision.eval()
    return {k: round(v, 4) for k, v in ema.items() if v is not None}


def save_checkpoint(model, processor, out_dir: Path, record: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))


def new_model(cfg, texts):
    """(tokenizer, image token id, processor, model): a fresh tiny BLIP-2 (T5) of ``cfg``'s architecture
    (``image_size``, ``patch_size``, ``num_query_tokens``, ``hidden``, ``layers``, ``qformer_layers``,
    ``heads``, ``seed``), its word-level tokenizer built over ``texts``."""
    tokenizer = build_word_tokenizer(texts)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    processor = make_processor(tokenizer, cfg.image_size, cfg.num_query_tokens)
    mcfg = blip2_config(
        "t5",
        vocab_size=len(tokenizer),
        image_token_id=image_token_id,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_query_tokens=cfg.num_query_tokens,
        hidden=cfg.hidden,
        layers=cfg.layers,
        qformer_layers=cfg.qformer_layers,
        heads=cfg.heads,
    )
    return tokenizer, image_token_id, processor, build_model(mcfg, seed=cfg.seed)


def train_demo(
    out_dir: str | Path,
    cfg: DemoConfig | None = None,
    device: str = "cpu",
    limit: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    save_every: int = 0,
    init_from: str | Path | None = None,
) -> dict:
    """Train on the easy-VQA train split and save the checkpoint to ``out_dir``; returns the training record.

    ``init_from`` continues from a checkpoint folder (its tokenizer and architecture are kept).
    """
    from tqdm.auto import tqdm

    from stcg.datasets import easy_vqa_vocabulary, load_easy_vqa

    cfg = cfg or DemoConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer, image_token_id, processor, model = new_model(cfg, easy_vqa_vocabulary())
    if init_from is not None:
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        model = Blip2ForConditionalGeneration.from_pretrained(str(init_from), attn_implementation="eager")
        processor = Blip2Processor.from_pretrained(str(init_from))
        tokenizer = processor.tokenizer
        image_token_id = model.config.image_token_id
    model = model.to(device).train()
    t_start = time.time()

    train = load_easy_vqa("train")
    if limit:
        train = [train[i] for i in rng.permutation(len(train))[:limit]]
    paths = sorted({e.image_path for e in train})
    path_index = {p: i for i, p in enumerate(paths)}
    pixels = _load_pixels(processor, paths)
    img_idx = torch.tensor([path_index[e.image_path] for e in train])
    ids, am = encode_questions(tokenizer, [e.question for e in train], cfg.num_query_tokens, image_token_id)
    labels = encode_answers(tokenizer, [e.answer for e in train])

    vision_record = None
    if init_from is None and cfg.vision_steps > 0:
        from easy_vqa import get_answers

        shape, colour, colours = image_labels(train, path_index, len(paths), list(get_answers()))
        vision_record = pretrain_vision(
            model.vision_model,
            pixels,
            shape,
            colour,
            len(colours),
            cfg.vision_steps,
            cfg.vision_lr,
            cfg.batch_size,
            cfg.seed,
            device,
            progress,
        )
        log(f"stage 1 (vision): training accuracy {vision_record}")
    if cfg.freeze_vision:
        model.vision_model.requires_grad_(False)
        model.vision_model.eval()

    by_image: list[list[int]] = [[] for _ in paths]
    for q, i in enumerate(img_idx.tolist()):
        by_image[i].append(q)
    qpi = max(1, min(cfg.questions_per_image, cfg.batch_size))
    n_img = max(1, cfg.batch_size // qpi)

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))
    )
    history = []
    bar = tqdm(range(cfg.steps), desc="train-demo", disable=not progress)
    ema_loss, ema_acc = None, None
    for step in bar:
        imgs = rng.choice(len(paths), size=n_img, replace=False)
        rows = [int(q) for i in imgs for q in rng.choice(by_image[i], size=qpi, replace=len(by_image[i]) < qpi)]
        b = torch.as_tensor(rows)
        lab = labels[b].to(device)
        out = _forward_shared_images(
            model,
            pixels[torch.as_tensor(imgs)].to(device),
            qpi,
            ids[b].to(device),
            am[b].to(device),
            lab,
            image_token_id,
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            pred = out.logits.argmax(-1)
            ok = ((pred == lab) | (lab == -100)).all(1).float().mean().item()
        loss = out.loss.item()
        ema_loss = loss if ema_loss is None else 0.95 * ema_loss + 0.05 * loss
        ema_acc = ok if ema_acc is None else 0.95 * ema_acc + 0.05 * ok
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}")
            history.append(
                {"step": step, "loss": round(loss, 5), "ema_loss": round(ema_loss, 5), "ema_acc": round(ema_acc, 4)}
            )
        if save_every and step and step % save_every == 0:  # a crash or a deadline never loses the run
            model.eval()
            save_checkpoint(
                model,
                processor,
                Path(out_dir),
                {
                    "config": asdict(cfg),
                    "step": step,
                    "history": history,
                    "seconds": round(time.time() - t_start, 1),
                    "partial": True,
                },
            )
            model.train()
            if cfg.freeze_vision:
                model.vision_model.eval()
    seconds = time.time() - t_start
    model.eval()
    out_dir = Path(out_dir)
    record = {
        "config": asdict(cfg),
        "init_from": str(init_from) if init_from else None,
        "device": device,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "train_questions": len(train),
        "seconds": round(seconds, 1),
        "history": history,
        "vision_stage": vision_record,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    save_checkpoint(model, processor, out_dir, record)
    log(
        f"trained {record['parameters']:,} parameters ({cfg.vision_steps} vision + {cfg.steps} VQA steps) in {seconds:.0f} s -> {out_dir}"
    )
    return record
