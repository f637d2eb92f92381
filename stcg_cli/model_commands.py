"""``stcg explain``: one image and one question end to end, without a database."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from stcg.datasets import dataset_forms
from stcg_cli.engine_options import MODEL_DEFAULT, RegistryHelpOption, engine_config, engine_options, model_help
from stcg_model.training.scenes_config import ScenesConfig


@click.command("explain")
@click.option(
    "--image",
    "image_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image file (any format Pillow reads).",
)
@click.option("--question", required=True, help="The question about the image.")
@engine_options
@click.option(
    "--out",
    default="out/explain",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for pictures and the saved STCGraph.",
)
def explain(image_path, question, out, **kw):
    """Explain one answer: print it, each perturbation's effect, and each content word's regions.

    With --attributions (e.g. all), also a table of each method's faithfulness on this example
    (deletion and insertion AUC as ratios to a random order, comprehensiveness, sufficiency) and a
    picture of every method's regions side by side (<example>__methods.png).

    Writes heatmap PNGs (token -> region, step -> region, dW per perturbation, the --top-k strongest
    regions outlined), an interactive HTML page, and the STCGraph (graph.safetensors) into --out.
    """
    from stcg.errors import StcgError
    from stcg.images import open_image
    from stcg_model.engine.core import STCGEngine, VQAInput
    from stcg_model.families.loading import checkpoint_config, load_model
    from stcg_model.plots import write_pictures

    cfg = engine_config(kw).validate()
    if not question.strip():
        raise StcgError("--question is empty")
    cfg.validate(checkpoint_config(cfg.model))  # layer indices, top-k, ... against the model, before loading it
    image = open_image(image_path)
    lm = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype_arg)
    with STCGEngine.from_config(lm, cfg) as engine:
        g = engine.explain([VQAInput(Path(image_path).stem, image, question, {"image_path": str(image_path)})])[0]
    top_k = cfg.top_k
    out_dir = Path(out)
    g.save(out_dir / "graph.safetensors")
    pictures = write_pictures(g, image, out_dir, top_k=top_k)

    click.echo(f"question: {g.question}")
    click.echo(f"answer:   {g.answer!r}  p(y|I) = {g.p_clean:.4f}")
    click.echo(f"{'perturbation':<22}{'answer':<16}{'changed':<9}{'dp':>9}{'|dW|_F':>9}")
    for k, kind in enumerate(g.perturbations):
        click.echo(
            f"{kind:<22}{g.perturbed_answers[k][:15]!s:<16}{'yes' if g.answer_changed[k] else 'no':<9}"
            f"{g.dp[k]:>9.4f}{g.dW_fro[k]:>9.4f}"
        )
    click.echo("content words -> strongest regions (row, col: weight):")
    for wi, (word, kind) in enumerate(zip(g.words, g.word_kinds)):
        if kind != "content":
            continue
        dist = g.word_regions(wi)
        top = np.argsort(-dist, kind="stable")[:top_k]
        click.echo(f"  {word:<14}" + "  ".join(f"({p // g.cols},{p % g.cols}): {dist[p]:.3f}" for p in top))
    auc = g.deletion_auc()
    if auc:
        click.echo(f"deletion AUC: attribution {auc[0]:.4f}, random {auc[1]:.4f}")
    if g.methods:
        click.echo(method_table(g))
    click.echo(f"wrote {len(pictures)} pictures and graph.safetensors to {out_dir}")
    (out_dir / "summary.json").write_text(json.dumps(g.summary(), indent=2))


def method_table(g) -> str:
    """Per method, this example's faithfulness: deletion/insertion ratios to a random order (del < 1
    and ins > 1 are better), comprehensiveness (higher better), sufficiency (lower better)."""
    lines = [
        "attribution methods on this example (del < 1, ins > 1, comp high, suff low are better):",
        f"  {'method':<12}{'del ratio':>10}{'ins ratio':>10}{'comp':>9}{'suff':>9}  top regions (row,col)",
    ]
    for name in g.method_names:
        m = g.method(name)
        sc = m.scores
        top = np.argsort(-np.asarray(m.region), kind="stable")[:3]
        where = " ".join(f"({p // g.cols},{p % g.cols})" for p in top)
        if sc:
            lines.append(
                f"  {name:<12}{sc['deletion_ratio']:>10.3f}{sc['insertion_ratio']:>10.3f}"
                f"{sc['comprehensiveness']:>9.4f}{sc['sufficiency']:>9.4f}  {where}"
            )
        else:
            lines.append(f"  {name:<12}{'':>38}  {where}")
    return "\n".join(lines)


@click.command("train-demo")
@click.option(
    "--out",
    default="out/demo-model",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Checkpoint folder to write (the shipped one is stcg_model/demo_model).",
)
@click.option(
    "--vision-steps",
    default=1000,
    show_default=True,
    help="Stage 1: steps in which the ViT learns each image's shape and colour (0 skips it).",
)
@click.option("--steps", default=4000, show_default=True, help="Stage 2: steps on the questions (ViT frozen).")
@click.option("--batch-size", default=64, show_default=True, help="Questions per step.")
@click.option("--lr", default=5e-4, show_default=True, help="Peak learning rate (AdamW, warm-up then cosine).")
@click.option("--warmup", default=200, show_default=True, help="Linear warm-up steps.")
@click.option("--seed", default=0, show_default=True, help="Seed of initialisation and sampling.")
@click.option("--limit", default=None, type=int, help="Train on a random subset of this many questions.")
@click.option(
    "--init-from",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="Continue training from this checkpoint folder.",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
def train_demo_cmd(out, vision_steps, steps, batch_size, lr, warmup, seed, limit, init_from, device):
    """Train the tiny BLIP-2 demo model (T5 language model) on the easy-VQA train split.

    Two stages, like BLIP-2 itself: the ViT first learns each training image's shape and colour
    (read off the answers to its questions), then stays frozen while the Q-Former and the T5
    language model learn to answer the questions.

    Seeded and reproducible; the tokenizer is built from easy-VQA's words and saved with the
    checkpoint, which then loads with Blip2ForConditionalGeneration.from_pretrained.
    """
    from stcg_model.engine.engine_config import check_count
    from stcg_model.families.loading import resolve_device
    from stcg_model.training.easy_vqa import DemoConfig, train_demo

    check_count("--steps", steps)
    check_count("--batch-size", batch_size)
    check_count("--vision-steps", vision_steps, minimum=0)
    check_count("--warmup", warmup, minimum=0)
    check_count("--limit", limit)
    if not lr > 0:
        from stcg.errors import StcgError

        raise StcgError(f"--lr {lr!r} is invalid; allowed: a learning rate > 0")
    cfg = DemoConfig(vision_steps=vision_steps, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed)
    train_demo(
        out, cfg, device=str(resolve_device(device)), limit=limit, log=click.echo, save_every=500, init_from=init_from
    )


_SCENES = ScenesConfig()


@click.command("train-scenes")
@click.option(
    "--out",
    default="out/scenes-model",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Checkpoint folder to write (the shipped one is stcg_model/scenes_model).",
)
@click.option(
    "--scenes",
    "train_scenes",
    default=_SCENES.train_scenes,
    show_default=True,
    help="Training scenes (examples 0..N-1).",
)
@click.option(
    "--vision-steps",
    default=_SCENES.vision_steps,
    show_default=True,
    help="Stage 1: steps on per-region labels (0 skips).",
)
@click.option("--steps", default=_SCENES.steps, show_default=True, help="Stage 2: steps on the questions (ViT frozen).")
@click.option("--batch-size", default=_SCENES.batch_size, show_default=True, help="Questions per stage-2 step.")
@click.option(
    "--relation-steps",
    default=_SCENES.relation_steps,
    show_default=True,
    help="Stage 3: steps of the relation phase (half of each batch relation questions, constant lr; 0 skips).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of initialisation and sampling.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--family",
    default="blip2",
    show_default=True,
    type=click.Choice(["blip2", "llava"]),
    help="Model family: blip2 (ViT + Q-Former + T5; shipped as stcg_model/scenes_model) or llava (ViT + MLP "
    "projector + Llama, one language-model slot per region; shipped as stcg_model/scenes_llava).",
)
def train_scenes_cmd(out, train_scenes, vision_steps, steps, batch_size, relation_steps, seed, device, family):
    """Train a tiny scenes model (BLIP-2 with T5, or LLaVA with Llama) on the scenes testbed's train split.

    The demo model's two stages: the ViT first learns what each 8 x 8 px region holds (the shape and
    colour of the object covering it and of the object centred in it, from the generator) and where it
    is, then stays frozen while the Q-Former and T5 learn to answer, with two auxiliary losses from the
    generator (the queries redraw the region map; question words find their objects); a relation
    phase follows (batches half relation questions, constant learning rate: the comparison of two
    objects' positions forms there), then a settling phase on all questions while the learning rate
    decays to 0. Check it with `stcg eval --dataset scenes` (accuracy and the causal
    edit check). Seeded; the checkpoint loads with from_pretrained. Partial checkpoints every 500 steps.

    --family llava: the same vision stage, then the projector and Llama learn to answer the conversation
    "USER: <image> {question} ASSISTANT: {answer}" (no auxiliary losses), with the same relation and
    settling phases (stcg_model/training/scenes_llava.py).
    """
    from stcg_model.engine.engine_config import check_count
    from stcg_model.families.loading import resolve_device
    from stcg_model.training.scenes import train_scenes as train

    check_count("--scenes", train_scenes)
    check_count("--steps", steps)
    check_count("--batch-size", batch_size)
    check_count("--vision-steps", vision_steps, minimum=0)
    check_count("--relation-steps", relation_steps, minimum=0)
    if family == "llava":
        from stcg_model.training.scenes_config import ScenesLlavaConfig
        from stcg_model.training.scenes_llava import train_scenes_llava

        lcfg = ScenesLlavaConfig(
            train_scenes=train_scenes,
            vision_steps=vision_steps,
            steps=steps,
            batch_size=batch_size,
            relation_steps=relation_steps,
            seed=seed,
        )
        train_scenes_llava(out, lcfg, device=str(resolve_device(device)), log=click.echo)
        return
    cfg = ScenesConfig(
        train_scenes=train_scenes,
        vision_steps=vision_steps,
        steps=steps,
        batch_size=batch_size,
        relation_steps=relation_steps,
        seed=seed,
    )
    train(out, cfg, device=str(resolve_device(device)), log=click.echo, save_every=500)


@click.command("eval")
@click.option(
    "--model",
    default=None,
    cls=RegistryHelpOption,
    help_from=lambda: model_help().replace(MODEL_DEFAULT, "[default: the embedded model for the dataset]"),
)
@click.option(
    "--dataset", default="easy-vqa", show_default=True, help=f"Dataset: {dataset_forms()} (see `stcg ingest --help`)."
)
@click.option("--split", default="test", show_default=True, help="Dataset split.")
@click.option("--limit", default=None, type=int, help="Evaluate only the first N questions.")
@click.option("--batch-size", default=128, show_default=True, help="Questions per batch.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write per-question rows as CSV.")
def eval_cmd(model, dataset, split, limit, batch_size, device, out):
    """Answer accuracy: exact match (and VQA accuracy with 10 human answers), overall and per question type.

    On the scenes testbed also the causal edit check: each attribute question is asked again with
    the target object recoloured or reshaped, each relation question with its two objects' shapes
    swapped (the answer should follow: bar >= 90 %), and each with a distractor recoloured or reshaped
    (the answer should not change: bar <= 5 %)."""
    from tqdm.auto import tqdm

    from stcg.datasets import open_dataset
    from stcg_model.engine.engine_config import check_count
    from stcg_model.engine.evaluation import accuracy_table, evaluate
    from stcg_model.families.loading import default_model, load_model

    check_count("--limit", limit)
    check_count("--batch-size", batch_size)
    examples = open_dataset(dataset, split=split, limit=limit)
    lm = load_model(model or default_model(dataset), device=device)
    click.echo(f"model: {lm.name}")
    with tqdm(total=len(examples), desc="eval", unit="q") as bar:
        df = evaluate(lm, examples, batch_size=batch_size, progress=bar.update)
    click.echo(accuracy_table(df).to_string())
    if out:
        df.to_csv(out, index=False)
        click.echo(f"wrote {out}")
    if any("scene" in e.extra for e in examples):
        from stcg_model.training.scenes_checks import CHECKED, causal_check, causal_summary

        scened = [e for e in examples if "scene" in e.extra]
        n_checked = sum(e.extra["scene"]["family"] in CHECKED for e in scened)
        with tqdm(total=n_checked, desc="causal check", unit="q") as bar:
            cdf = causal_check(lm, scened, batch_size, progress=bar.update)
        for family in CHECKED:
            s = causal_summary(cdf, family)
            if not s["questions"]:
                continue
            click.echo(
                f"causal edit check on {s['questions']} {family} questions: the answer follows a target edit on "
                f"{100 * s['follow_rate']:.1f} % (bar >= {100 * s['follow_bar']:.0f} %), changes with a distractor "
                f"edit on {100 * s['change_rate']:.1f} % of {s['distractor_edits']} (bar <= {100 * s['change_bar']:.0f} %): "
                + ("passes" if s["passes"] else "FAILS")
            )
