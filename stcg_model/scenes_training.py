"""Train the scenes model: a small ``Blip2ForConditionalGeneration`` (T5) on the scenes testbed.

The same transformers classes and two-stage recipe as the easy-VQA demo model (``training.py``):

1. the ViT alone learns what each 8 x 8 px region holds and where it is (BLIP-2's pretrained image
   encoder plays this part for real checkpoints): per region, the (shape, colour) of the object covering
   most of it and of the object whose centre lies in it (none for either, 16 classes each), from the
   generator's scene description - dense labels, as a detection-pretrained encoder would have learnt -
   and the region's own row and column (a pretrained ViT's patch outputs keep their position; heads
   trained on content alone need not);
2. the ViT frozen, the Q-Former and the T5 language model learn to answer the questions, and the
   Q-Former's queries must also redraw the region map (``LayoutHead``: each region's ``cover`` class from
   the queries alone; weight ``layout_weight``), as BLIP-2's captioning pretraining asks them to keep
   what is where; and T5's encoder must place the objects its question words name (``word_targets``: a
   shape or colour word naming one object -> that object's column and row; ``left`` -> its two
   arguments' columns, a linear head on the encoder outputs; weight ``grounding_weight``), as
   grounding data (region-word pairs) teaches real VLMs. Both heads are thrown away after training. The
   layout loss brings positions into the queries (without it they barely got through); relation
   questions still stay near chance within the default budget (docs/demo-model.md). The
   frozen ViT's outputs are computed once for every training image, so a step runs the Q-Former and T5
   only.

The result is an ordinary checkpoint folder (``config.json``, ``model.safetensors``, processor and
tokenizer) that ``Blip2ForConditionalGeneration.from_pretrained`` loads like any hub checkpoint.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from stcg import scenes
from stcg_model.scenes_config import ScenesConfig
from stcg_model.training import _encode_answers, _encode_questions, _save, new_model

GRID = scenes.SIZE // 8  # regions per side at patch size 8
CLASSES = [(s, c) for s in scenes.SHAPES for c in scenes.COLOURS]  # class k + 1; 0 = no object


def scenes_vocabulary() -> list[str]:
    """Every word a scenes question or answer uses (the tokenizer's vocabulary)."""
    texts = [*scenes.NUMBERS, "yes", "no", *scenes.SHAPES, *scenes.COLOURS]
    for s in scenes.SHAPES:
        texts.append(scenes.question_text("attribute", ("color", s)))
    for c in scenes.COLOURS:
        texts += [
            scenes.question_text("attribute", ("shape", c)),
            scenes.question_text("count", (c,)),
            *(scenes.question_text("existence", (c, s)) for s in scenes.SHAPES),
        ]
    texts += [scenes.question_text("relation", (a, b)) for a in scenes.SHAPES for b in scenes.SHAPES if a != b]
    return texts


def region_labels(scene: scenes.Scene, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 targets of one scene, each (grid * grid,) int64 in row-major region order:
    ``cover`` - the class of the object painting most of the region's pixels (0 when under 1/8 of it is
    painted); ``centre`` - the class of the object whose centre pixel lies in the region (0: none).
    Class k + 1 is ``CLASSES[k]``."""
    cell = scenes.SIZE // grid
    cover = np.zeros(grid * grid, np.int64)
    best = np.zeros(grid * grid)
    centre = np.zeros(grid * grid, np.int64)
    for o in scene.objects:
        k = CLASSES.index((o.shape, o.colour)) + 1
        share = scenes.object_mask(o).reshape(grid, cell, grid, cell).mean((1, 3)).reshape(-1)
        take = (share > best) & (share >= 1 / 8)
        cover[take], best[take] = k, share[take]
        centre[(o.cy // cell) * grid + o.cx // cell] = k
    return cover, centre


GROUNDING_SLOTS = 4  # per question token: (column, row) of the object it names; "left": both arguments' columns


def word_targets(scene: scenes.Scene, words: list[str], grid: int = GRID) -> np.ndarray:
    """Stage-2 grounding targets of one question, (len(words), 4) int64, -100 where none:

    - a shape or colour word that names exactly one object of the scene -> that object's region column
      and row (slots 0, 1);
    - the relation word ``left`` -> the columns of its first and second argument (slots 2, 3).
    """
    cell = scenes.SIZE // grid
    out = np.full((len(words), GROUNDING_SLOTS), -100, np.int64)
    for j, w in enumerate(words):
        if w in scenes.SHAPES or w in scenes.COLOURS:
            named = [o for o in scene.objects if w in (o.shape, o.colour)]
            if len(named) == 1:
                out[j, 0], out[j, 1] = named[0].cx // cell, named[0].cy // cell
        elif w == "left" and scene.family == "relation":
            a, b = ([o for o in scene.objects if o.shape == s][0] for s in scene.args)
            out[j, 2], out[j, 3] = a.cx // cell, b.cx // cell
    return out


def _pixels(processor, images) -> torch.Tensor:
    out = [
        processor.image_processor(images=images[s : s + 1024], return_tensors="pt")["pixel_values"]
        for s in range(0, len(images), 1024)
    ]
    return torch.cat(out)


def _set_dropout(model, p: float) -> None:
    """Dropout ``p`` in the Q-Former and the language model, in the modules and the saved config."""
    qc, tc = model.config.qformer_config, model.config.text_config
    qc.hidden_dropout_prob = qc.attention_probs_dropout_prob = p
    if hasattr(tc, "dropout_rate"):
        tc.dropout_rate = p
    for part in (model.qformer, model.language_model):
        for mod in part.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = p


def pretrain_regions(
    vision, pixels, cover, centre, steps: int, lr: float, batch_size: int, seed: int, device: str, progress: bool = True
) -> dict:
    """Stage 1: the ViT's patch outputs -> linear heads predict ``cover`` and ``centre`` (N, P) and each
    patch's own row and column.

    Returns the final (smoothed) training accuracies (all regions of an image right); the heads are
    thrown away."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    d = vision.config.hidden_size
    n_cls = len(CLASSES) + 1
    side = int(round(cover.shape[1] ** 0.5))
    heads = torch.nn.ModuleDict(
        {
            "cover": torch.nn.Linear(d, n_cls),
            "centre": torch.nn.Linear(d, n_cls),
            "row": torch.nn.Linear(d, side),
            "col": torch.nn.Linear(d, side),
        }
    ).to(device)
    where = torch.arange(side * side, device=device)
    params = [*vision.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    vision.train()
    ema: dict[str, float] = {}
    bar = tqdm(range(steps), desc="train-scenes: vision", disable=not progress)
    for step in bar:
        b = torch.randint(0, len(pixels), (batch_size,), generator=gen)
        patches = vision(pixel_values=pixels[b].to(device)).last_hidden_state[:, 1:]  # (B, P, d)
        loss = 0.0
        targets = {
            "cover": cover[b].to(device),
            "centre": centre[b].to(device),
            "row": (where // side).expand(len(b), -1),
            "col": (where % side).expand(len(b), -1),
        }
        for name, target in targets.items():
            logits = heads[name](patches)
            loss = loss + torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
            ok = (logits.argmax(-1) == target).all(1).float().mean().item()  # every region of the image right
            ema[name] = ok if name not in ema else 0.95 * ema[name] + 0.05 * ok
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()})
    vision.eval()
    return {f"{k}_all_regions": round(v, 4) for k, v in ema.items()}


class LayoutHead(torch.nn.Module):
    """Stage 2's auxiliary head: from the Q-Former's query outputs (B, Q, d), each region's learned
    embedding attends over the queries and predicts the region's ``cover`` class -> (B, P, classes).

    It asks the queries to keep what is where, which BLIP-2's own pretraining (image-text matching and
    captioning on real data) asks of them and the answer loss alone on a small testbed does not; it is
    thrown away after training."""

    def __init__(self, d: int, regions: int, heads: int, classes: int):
        super().__init__()
        self.regions = torch.nn.Parameter(torch.randn(regions, d) * 0.02)
        self.attend = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = torch.nn.LayerNorm(d)
        self.out = torch.nn.Linear(d, classes)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        r = self.regions.expand(queries.shape[0], -1, -1)
        h, _ = self.attend(r, queries, queries, need_weights=False)
        return self.out(self.norm(h + r))


def _answer_logits(model, image_embeds, input_ids, attention_mask, labels, image_token_id: int):
    """``model(...)`` from precomputed vision-tower outputs ``image_embeds`` (B, 1 + P, d_vision), and
    the Q-Former's query outputs (B, Q, d_qformer)."""
    query = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    q = model.qformer(
        query_embeds=query,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device),
        return_dict=True,
    )[0]
    feats = model.language_projection(q)
    embeds = model.get_input_embeddings()(input_ids)
    embeds = embeds.masked_scatter((input_ids == image_token_id).unsqueeze(-1), feats.to(embeds.dtype))
    out = model.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, return_dict=True)
    return out, q


def train_scenes(
    out_dir: str | Path,
    cfg: ScenesConfig | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
    save_every: int = 0,
) -> dict:
    """Train on examples ``0..cfg.train_scenes-1`` of the scenes train split; save to ``out_dir``.

    Returns the training record (also written as ``training.json``)."""
    from tqdm.auto import tqdm

    cfg = cfg or ScenesConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer, image_token_id, processor, model = new_model(cfg, scenes_vocabulary())
    _set_dropout(model, cfg.dropout)
    model = model.to(device).train()
    t_start = time.time()

    train = [scenes.generate("train", i) for i in range(cfg.train_scenes)]
    pixels = _pixels(processor, [scenes.render(s) for s in train])
    grid = cfg.image_size // cfg.patch_size
    labels_1 = [region_labels(s, grid) for s in train]
    cover = torch.as_tensor(np.stack([c for c, _ in labels_1]))
    centre = torch.as_tensor(np.stack([c for _, c in labels_1]))
    log(f"{len(train):,} training scenes rendered in {time.time() - t_start:.0f} s")

    vision_record = None
    if cfg.vision_steps > 0:
        vision_record = pretrain_regions(
            model.vision_model,
            pixels,
            cover,
            centre,
            cfg.vision_steps,
            cfg.vision_lr,
            cfg.vision_batch_size,
            cfg.seed,
            device,
            progress,
        )
        log(f"stage 1 (vision): training accuracy {vision_record}")
    model.vision_model.requires_grad_(False)
    model.vision_model.eval()
    with torch.no_grad():
        embeds = torch.cat(
            [
                model.vision_model(pixel_values=pixels[s : s + 512].to(device)).last_hidden_state.cpu()
                for s in range(0, len(pixels), 512)
            ]
        )
    del pixels

    ids, am = _encode_questions(tokenizer, [s.question for s in train], cfg.num_query_tokens, image_token_id)
    labels = _encode_answers(tokenizer, [scenes.answer(s) for s in train])
    ground = torch.as_tensor(
        np.stack([word_targets(s, tokenizer.convert_ids_to_tokens(row.tolist()), grid) for s, row in zip(train, ids)])
    )  # (N, L, GROUNDING_SLOTS)
    grounding = torch.nn.Linear(model.config.text_config.d_model, GROUNDING_SLOTS * grid).to(device)
    layout = LayoutHead(model.config.qformer_config.hidden_size, cover.shape[1], cfg.heads, len(CLASSES) + 1).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad] + [*layout.parameters(), *grounding.parameters()]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))
    )
    families = np.array([s.family for s in train])
    history = []
    ema_loss, ema_acc, ema_layout, ema_ground = None, None, None, None
    bar = tqdm(range(cfg.steps), desc="train-scenes", disable=not progress)
    for step in bar:
        b = torch.as_tensor(rng.choice(len(train), size=cfg.batch_size, replace=False))
        lab = labels[b].to(device)
        out, q = _answer_logits(model, embeds[b].to(device), ids[b].to(device), am[b].to(device), lab, image_token_id)
        total = out.loss
        if cfg.layout_weight > 0:
            region_logits = layout(q)
            region_target = cover[b].to(device)
            total = total + cfg.layout_weight * torch.nn.functional.cross_entropy(
                region_logits.flatten(0, 1), region_target.flatten()
            )
            with torch.no_grad():
                lay = float((region_logits.argmax(-1) == region_target).float().mean())
            ema_layout = lay if ema_layout is None else 0.95 * ema_layout + 0.05 * lay
        if cfg.grounding_weight > 0:
            word_logits = grounding(out.encoder_last_hidden_state).view(len(b), -1, GROUNDING_SLOTS, grid)
            total = total + cfg.grounding_weight * torch.nn.functional.cross_entropy(
                word_logits.flatten(0, 2), ground[b].to(device).flatten(), ignore_index=-100
            )
            with torch.no_grad():
                tgt = ground[b].to(device)
                hit = (word_logits.argmax(-1) == tgt)[tgt >= 0].float().mean()
            ema_ground = float(hit) if ema_ground is None else 0.95 * ema_ground + 0.05 * float(hit)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            ok_rows = ((out.logits.argmax(-1) == lab) | (lab == -100)).all(1).float().cpu().numpy()
        loss, ok = out.loss.item(), float(ok_rows.mean())
        ema_loss = loss if ema_loss is None else 0.95 * ema_loss + 0.05 * loss
        ema_acc = ok if ema_acc is None else 0.95 * ema_acc + 0.05 * ok
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}")
        if step % 50 == 0 or step == cfg.steps - 1:
            fam = families[b.numpy()]
            history.append(
                {
                    "step": step,
                    "loss": round(loss, 5),
                    "ema_loss": round(ema_loss, 5),
                    "ema_acc": round(ema_acc, 4),
                    **({"layout_region_acc": round(ema_layout, 4)} if ema_layout is not None else {}),
                    **({"grounding_acc": round(ema_ground, 4)} if ema_ground is not None else {}),
                    **{f: round(float(ok_rows[fam == f].mean()), 3) for f in scenes.FAMILIES if (fam == f).any()},
                }
            )
        if save_every and step and step % save_every == 0:  # a crash or a deadline never loses the run
            model.eval()
            _save(
                model,
                processor,
                Path(out_dir),
                {"config": asdict(cfg), "step": step, "history": history, "partial": True},
            )
            model.train()
            model.vision_model.eval()
    seconds = time.time() - t_start
    model.eval()
    record = {
        "config": asdict(cfg),
        "dataset": f"scenes:{cfg.train_scenes} train",
        "device": device,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "history": history,
        "vision_stage": vision_record,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    _save(model, processor, Path(out_dir), record)
    log(
        f"trained {record['parameters']:,} parameters ({cfg.vision_steps} vision + {cfg.steps} VQA steps) "
        f"in {seconds:.0f} s -> {out_dir}"
    )
    return record
