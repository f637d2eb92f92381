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

from stcg_model.tiny import blip2_config, build_model
from stcg_model.tokenizer import build_word_tokenizer, make_processor


@dataclass
class DemoConfig:
    """Architecture and optimisation of the demo model (defaults: the shipped checkpoint)."""

    image_size: int = 64          # easy-VQA images are 64 x 64
    patch_size: int = 8           # -> an 8 x 8 grid of 64 regions
    num_query_tokens: int = 8
    hidden: int = 128
    layers: int = 3               # ViT layers and T5 encoder/decoder layers each
    qformer_layers: int = 2
    heads: int = 4
    steps: int = 4000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    seed: int = 0


def _load_pixels(processor, paths: list[str]) -> torch.Tensor:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    out = []
    for s in range(0, len(images), 512):
        out.append(processor.image_processor(images=images[s:s + 512], return_tensors="pt")["pixel_values"])
    return torch.cat(out)


def _encode_questions(tokenizer, questions: list[str], Q: int, image_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(questions, padding=True, return_tensors="pt")
    ids = torch.cat([torch.full((len(questions), Q), image_token_id), enc["input_ids"]], 1)
    am = torch.cat([torch.ones((len(questions), Q), dtype=torch.long), enc["attention_mask"]], 1)
    return ids, am


def _encode_answers(tokenizer, answers: list[str]) -> torch.Tensor:
    enc = tokenizer(answers, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    return labels


def _save(model, processor, out_dir: Path, record: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))


def train_demo(out_dir: str | Path, cfg: DemoConfig | None = None, device: str = "cpu", limit: int | None = None,
               log: Callable[[str], None] = print, progress: bool = True, save_every: int = 0,
               init_from: str | Path | None = None) -> dict:
    """Train on the easy-VQA train split and save the checkpoint to ``out_dir``; returns the training record.

    ``init_from`` continues from a checkpoint folder (its tokenizer and architecture are kept).
    """
    from tqdm.auto import tqdm

    from ingest.datasets import easy_vqa_vocabulary, load_easy_vqa

    cfg = cfg or DemoConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer = build_word_tokenizer(easy_vqa_vocabulary())
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    processor = make_processor(tokenizer, cfg.image_size, cfg.num_query_tokens)
    mcfg = blip2_config("t5", vocab_size=len(tokenizer), image_token_id=image_token_id, image_size=cfg.image_size,
                        patch_size=cfg.patch_size, num_query_tokens=cfg.num_query_tokens, hidden=cfg.hidden,
                        layers=cfg.layers, qformer_layers=cfg.qformer_layers, heads=cfg.heads)
    model = build_model(mcfg, seed=cfg.seed)
    if init_from is not None:
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        model = Blip2ForConditionalGeneration.from_pretrained(str(init_from), attn_implementation="eager")
        processor = Blip2Processor.from_pretrained(str(init_from))
        tokenizer = processor.tokenizer
        image_token_id = model.config.image_token_id
    model = model.to(device).train()

    train = load_easy_vqa("train")
    if limit:
        train = [train[i] for i in rng.permutation(len(train))[:limit]]
    paths = sorted({e.image_path for e in train})
    path_index = {p: i for i, p in enumerate(paths)}
    pixels = _load_pixels(processor, paths)
    img_idx = torch.tensor([path_index[e.image_path] for e in train])
    ids, am = _encode_questions(tokenizer, [e.question for e in train], cfg.num_query_tokens, image_token_id)
    labels = _encode_answers(tokenizer, [e.answer for e in train])

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    t0 = time.time()
    history = []
    bar = tqdm(range(cfg.steps), desc="train-demo", disable=not progress)
    ema_loss, ema_acc = None, None
    for step in bar:
        b = torch.as_tensor(rng.integers(0, len(train), cfg.batch_size))
        lab = labels[b].to(device)
        out = model(pixel_values=pixels[img_idx[b]].to(device), input_ids=ids[b].to(device),
                    attention_mask=am[b].to(device), labels=lab)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
            history.append({"step": step, "loss": round(loss, 5), "ema_loss": round(ema_loss, 5), "ema_acc": round(ema_acc, 4)})
        if save_every and step and step % save_every == 0:  # a crash or a deadline never loses the run
            model.eval()
            _save(model, processor, Path(out_dir), {"config": asdict(cfg), "step": step, "history": history,
                                                    "seconds": round(time.time() - t0, 1), "partial": True})
            model.train()
    seconds = time.time() - t0
    model.eval()
    out_dir = Path(out_dir)
    record = {"config": asdict(cfg), "init_from": str(init_from) if init_from else None, "device": device, "machine": platform.machine(), "threads": torch.get_num_threads(),
              "train_questions": len(train), "seconds": round(seconds, 1), "history": history,
              "parameters": sum(p.numel() for p in model.parameters())}
    _save(model, processor, out_dir, record)
    log(f"trained {record['parameters']:,} parameters for {cfg.steps} steps in {seconds:.0f} s -> {out_dir}")
    return record
