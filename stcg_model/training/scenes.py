"""Train the scenes model: a small ``Blip2ForConditionalGeneration`` (T5) on the scenes testbed.

The same transformers classes and two-stage recipe as the easy-VQA demo model (``easy_vqa.py``):

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
   layout loss brings positions into the queries (without it they barely got through);
3. the relation phase: batches half relation questions at a constant learning rate. With all families
   mixed and the learning rate decaying, relation questions stayed at chance (docs/demo-model.md); here
   the comparison of two objects' columns forms after a few hundred steps;
4. settling: all questions again while the learning rate decays to 0 (the constant rate of stage 3
   leaves the other families noisy).

The frozen ViT's outputs are computed once for every training image, so a step of stages 2-4 runs the
Q-Former and T5 only.

The result is an ordinary checkpoint folder (``config.json``, ``model.safetensors``, processor and
tokenizer) that ``Blip2ForConditionalGeneration.from_pretrained`` loads like any hub checkpoint.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stcg import scenes
from stcg_model.training.easy_vqa import encode_answers, encode_questions, new_model, save_checkpoint
from stcg_model.training.scenes_config import ScenesConfig
from stcg_model.training.scenes_targets import (
    CLASSES,
    GROUNDING_SLOTS,
    LayoutHead,
    grounding_loss,
    region_labels,
    word_targets,
)


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


def processor_pixels(processor, images) -> torch.Tensor:
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


@dataclass
class _AnswerData:
    """Stage-2/3 training tensors, one row per training scene: frozen ViT outputs ``embeds`` (N, 1 + P, d),
    question ``ids``/``am`` (N, L), answer ``labels`` (N, T), region ``cover`` classes (N, P), grounding
    targets ``ground`` (N, L, GROUNDING_SLOTS) and each question's ``families`` (N,) str."""

    embeds: torch.Tensor
    ids: torch.Tensor
    am: torch.Tensor
    labels: torch.Tensor
    cover: torch.Tensor
    ground: torch.Tensor
    families: np.ndarray


def _answer_phase(
    phase: str,
    model,
    data: _AnswerData,
    layout: LayoutHead,
    grounding: torch.nn.Linear,
    cfg: ScenesConfig,
    image_token_id: int,
    sample: Callable[[], torch.Tensor],
    steps: int,
    lr_at: Callable[[int], float],
    history: list,
    device: str,
    progress: bool,
    checkpoint: Callable[[int], None] | None,
    checkpoint_every: int = 500,
) -> None:
    """Train the Q-Former and T5 (and the two auxiliary heads) for ``steps`` steps on batches of row
    indices drawn by ``sample``; learning rate ``lr_at(step)``. Appends a row to ``history`` every 50 steps
    (smoothed loss and accuracy, the batch's accuracy per question family)."""
    from tqdm.auto import tqdm

    grid = cfg.image_size // cfg.patch_size
    trainable = [p for p in model.parameters() if p.requires_grad] + [*layout.parameters(), *grounding.parameters()]
    opt = torch.optim.AdamW(trainable, lr=1.0, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema: dict[str, float] = {}

    def smooth(name: str, value: float) -> float:
        ema[name] = value if name not in ema else 0.95 * ema[name] + 0.05 * value
        return ema[name]

    bar = tqdm(range(steps), desc=f"train-scenes: {phase}", disable=not progress)
    for step in bar:
        b = sample()
        lab = data.labels[b].to(device)
        out, q = _answer_logits(
            model, data.embeds[b].to(device), data.ids[b].to(device), data.am[b].to(device), lab, image_token_id
        )
        total = out.loss
        if cfg.layout_weight > 0:
            region_logits = layout(q)
            region_target = data.cover[b].to(device)
            total = total + cfg.layout_weight * torch.nn.functional.cross_entropy(
                region_logits.flatten(0, 1), region_target.flatten()
            )
            smooth("layout_region_acc", float((region_logits.argmax(-1) == region_target).float().mean()))
        if cfg.grounding_weight > 0:
            word_logits = grounding(out.encoder_last_hidden_state).view(len(b), -1, GROUNDING_SLOTS, grid)
            g_loss, hit = grounding_loss(word_logits, data.ground[b].to(device))
            total = total + cfg.grounding_weight * g_loss
            smooth("grounding_acc", hit)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            ok_rows = ((out.logits.argmax(-1) == lab) | (lab == -100)).all(1).float().cpu().numpy()
        loss = out.loss.item()
        smooth("ema_loss", loss)
        smooth("ema_acc", float(ok_rows.mean()))
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{ema['ema_loss']:.3f}", acc=f"{ema['ema_acc']:.3f}")
        if step % 50 == 0 or step == steps - 1:
            fam = data.families[b.numpy()]
            history.append(
                {
                    "phase": phase,
                    "step": step,
                    "loss": round(loss, 5),
                    **{k: round(v, 4) for k, v in ema.items()},
                    **{f: round(float(ok_rows[fam == f].mean()), 3) for f in scenes.FAMILIES if (fam == f).any()},
                }
            )
        if checkpoint and step and step % checkpoint_every == 0:
            checkpoint(step)


def train_scenes(
    out_dir: str | Path,
    cfg: ScenesConfig | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
    save_every: int = 0,
) -> dict:
    """Train on examples ``0..cfg.train_scenes-1`` of the scenes train split; save to ``out_dir``.

    Stage 1 (vision), stage 2 (all questions, warm-up then cosine decay), stage 3 (the relation phase:
    batches ``relation_share`` relation questions, constant learning rate) and stage 4 (settling: all
    questions, the learning rate decays from ``relation_lr`` to 0); ``save_every`` > 0: also
    save a partial checkpoint every that many steps of stages 2 to 4. Returns the training record (also written
    as ``training.json``)."""
    cfg = cfg or ScenesConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer, image_token_id, processor, model = new_model(cfg, scenes_vocabulary())
    _set_dropout(model, cfg.dropout)
    model = model.to(device).train()
    t_start = time.time()

    train = [scenes.generate("train", i) for i in range(cfg.train_scenes)]
    pixels = processor_pixels(processor, [scenes.render(s) for s in train])
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

    ids, am = encode_questions(tokenizer, [s.question for s in train], cfg.num_query_tokens, image_token_id)
    data = _AnswerData(
        embeds=embeds,
        ids=ids,
        am=am,
        labels=encode_answers(tokenizer, [scenes.answer(s) for s in train]),
        cover=cover,
        ground=torch.as_tensor(
            np.stack([word_targets(s, tokenizer.convert_ids_to_tokens(r.tolist()), grid) for s, r in zip(train, ids)])
        ),
        families=np.array([s.family for s in train]),
    )
    grounding = torch.nn.Linear(model.config.text_config.d_model, GROUNDING_SLOTS * grid).to(device)
    layout = LayoutHead(model.config.qformer_config.hidden_size, cover.shape[1], cfg.heads, len(CLASSES) + 1).to(device)
    history: list[dict] = []
    done = {"stage 2": 0, "stage 3": 0, "stage 4": 0}

    def checkpoint(phase: str) -> Callable[[int], None] | None:
        def save(step: int) -> None:  # a crash or a deadline never loses the run
            done[phase] = step
            model.eval()
            save_checkpoint(
                model,
                processor,
                Path(out_dir),
                {"config": asdict(cfg), "done": done, "history": history, "partial": True},
            )
            model.train()
            model.vision_model.eval()

        return save if save_every > 0 else None

    def draw(pool: np.ndarray, size: int) -> torch.Tensor:
        return torch.as_tensor(rng.choice(pool, size=min(size, len(pool)), replace=False))

    everything = np.arange(len(train))
    _answer_phase(
        "stage 2", model, data, layout, grounding, cfg, image_token_id,
        sample=lambda: draw(everything, cfg.batch_size),
        steps=cfg.steps,
        lr_at=lambda s: cfg.lr * min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))),
        history=history, device=device, progress=progress, checkpoint=checkpoint("stage 2"), checkpoint_every=save_every,
    )  # fmt: skip
    done["stage 2"] = cfg.steps
    if cfg.relation_steps > 0:
        relation = np.flatnonzero(data.families == "relation")
        n_rel = round(cfg.relation_share * cfg.relation_batch_size)

        def relation_batch() -> torch.Tensor:
            return torch.cat([draw(relation, n_rel), draw(everything, cfg.relation_batch_size - n_rel)])

        _answer_phase(
            "stage 3", model, data, layout, grounding, cfg, image_token_id,
            sample=relation_batch,
            steps=cfg.relation_steps,
            lr_at=lambda s: cfg.relation_lr * min(1.0, (s + 1) / 50),
            history=history, device=device, progress=progress, checkpoint=checkpoint("stage 3"), checkpoint_every=save_every,
        )  # fmt: skip
        done["stage 3"] = cfg.relation_steps
    if cfg.settle_steps > 0:
        _answer_phase(
            "stage 4", model, data, layout, grounding, cfg, image_token_id,
            sample=lambda: draw(everything, cfg.relation_batch_size),
            steps=cfg.settle_steps,
            lr_at=lambda s: cfg.relation_lr * 0.5 * (1 + math.cos(math.pi * s / cfg.settle_steps)),
            history=history, device=device, progress=progress, checkpoint=checkpoint("stage 4"), checkpoint_every=save_every,
        )  # fmt: skip
        done["stage 4"] = cfg.settle_steps
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
    save_checkpoint(model, processor, Path(out_dir), record)
    log(
        f"trained {record['parameters']:,} parameters ({cfg.vision_steps} vision + {cfg.steps} VQA "
        f"+ {cfg.relation_steps} relation-phase + {cfg.settle_steps} settling steps) in {seconds:.0f} s -> {out_dir}"
    )
    return record
