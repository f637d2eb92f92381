"""``EngineConfig``: one set of engine settings, checked in one place before any model work, through the
real ``stcg`` entry point (one line on stderr, never a traceback) and through the Python API."""

from __future__ import annotations

import pytest

from stcg.errors import StcgError
from stcg_model.engine.engine_config import EngineConfig
from stcg_model.testing.tiny import tiny_blip2


@pytest.fixture(scope="module")
def t5():
    return tiny_blip2("t5", seed=2)  # 16 regions, 2 layers per hook point


def _cli(argv, capsys):
    """``stcg_cli.main.main(argv)``: (exit code, stdout, stderr)."""
    from stcg_cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def no_model_work(monkeypatch):
    """Loading weights, reading images or connecting to Neo4j fails the test: the refusal must come first."""

    def forbidden(*a, **k):
        raise AssertionError("model work started before the arguments were checked")

    import stcg.db
    import stcg.images
    import stcg_model.families.loading

    monkeypatch.setattr(stcg_model.families.loading, "load_model", forbidden)
    monkeypatch.setattr(stcg.db, "connect", forbidden)
    monkeypatch.setattr(stcg.images, "open_image", forbidden)


BAD = [
    (["--layers", "99"], "layer 99 is out of range for this model (2 Q-Former cross-attention"),
    (["--layers", "0,-3"], "layer -3 is out of range"),
    (["--layers", "first"], "bad layer selection 'first'"),
    (
        ["--perturbations", "center_mask:fraction=2"],
        "perturbation center_mask: fraction=2 is out of range; allowed: 0 <",
    ),
    (["--perturbations", "gaussian_noise:sigma=-0.1"], "perturbation gaussian_noise: sigma=-0.1 is out of range"),
    (["--perturbations", "patch_shuffle:tiles=0"], "perturbation patch_shuffle: tiles=0 is out of range"),
    (
        ["--perturbations", "patch_shuffle:tiles=1.5"],
        "perturbation patch_shuffle: tiles=1.5 is out of range; allowed: an integer 1 <= tiles <= 256",
    ),
    (["--perturbations", "center_mask:size=3"], "perturbation 'center_mask' has no parameter ['size']"),
    (["--perturbations", "color_shift:hue_shift=red"], "perturbation color_shift: hue_shift=red is not a number"),
    (["--deletion-steps", "-1"], "--deletion-steps -1 is invalid"),
    (["--deletion-steps", "17"], "--deletion-steps 17 is more than the model's 16 regions"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0 is invalid; allowed: an integer >= 1"),
    (["--top-k", "0"], "--top-k 0 is invalid"),
    (["--top-k", "17"], "--top-k 17 is larger than the model's 16 regions; allowed: 1..16"),
    (["--seed", "-1"], "--seed -1 is invalid; allowed: an integer >= 0"),
    (["--dtype", "float8"], "unknown --dtype 'float8'"),
    (["--dtype", "float16"], "float16 is refused for T5"),
    (["--device", "gpu7"], "unknown --device 'gpu7'"),
    (["--prompt", "no placeholder"], "the prompt must contain {question} exactly once"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_ingest_refuses_each_bad_engine_parameter_in_one_line(
    args, message, tiny_checkpoint, tmp_path, capsys, no_model_work
):
    code, out, err = _cli(
        ["ingest", "--model", tiny_checkpoint, "--store", str(tmp_path / "store"), "--quiet", *args], capsys
    )
    assert code == 2, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: " + message), err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sample", "0"], "--sample 0 is invalid; allowed: an integer >= 1"),
        (["--limit", "0"], "--limit 0 is invalid; allowed: an integer >= 1"),
        (["--batch-size", "0"], "--batch-size 0 is invalid; allowed: an integer >= 1"),
        (["--shard", "2/2"], "invalid --shard '2/2'"),
        (["--run-name", "a/b"], "--run-name 'a/b' cannot be used: run id 'a/b' cannot be a folder name"),
        (["--run-name", ".."], "--run-name '..' cannot be used"),
        (["--run-name", "bell\x07"], "--run-name 'bell\\x07' contains the control character U+0007"),
        (
            ["--run-name", "\u200b"],
            "--run-name '\\u200b' contains the invisible format character U+200B (ZERO WIDTH SPACE)",
        ),
        (["--run-name", "\ufeffS"], "--run-name '\\ufeffS' contains the invisible format character U+FEFF"),
        (["--run-name", "S\u200b"], "--run-name 'S\\u200b' contains the invisible format character U+200B"),
        (["--run-name", "\u202eS"], "--run-name '\\u202eS' contains the invisible format character U+202E"),
        (["--run-name", " padded"], "--run-name ' padded' starts or ends with white space"),
    ],
)
def test_ingest_refuses_bad_selection_and_names_in_one_line(
    args, message, tiny_checkpoint, tmp_path, capsys, no_model_work
):
    code, _, err = _cli(["ingest", "--model", tiny_checkpoint, "--store", str(tmp_path / "s"), *args], capsys)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and err.startswith("error: " + message), err


EXPLAIN_BAD = [BAD[0], BAD[2], BAD[3], BAD[13]]


@pytest.mark.parametrize("args,message", EXPLAIN_BAD, ids=[" ".join(a) for a, _ in EXPLAIN_BAD])
def test_explain_refuses_bad_engine_parameters_before_loading(
    args, message, tiny_checkpoint, tmp_path, capsys, no_model_work
):
    code, _, err = _cli(
        ["explain", "--image", str(tmp_path / "i.png"), "--question", "q", "--model", tiny_checkpoint, *args], capsys
    )
    assert code == 2 and err.startswith("error: " + message) and len(err.strip().splitlines()) == 1, err


def test_both_commands_share_the_engine_options_and_defaults():
    from stcg_cli.engine_options import ENGINE_OPTION_NAMES
    from stcg_cli.ingest_commands import ingest
    from stcg_cli.model_commands import explain

    def engine_params(cmd):
        return {p.name: p.default for p in cmd.params if p.name in ENGINE_OPTION_NAMES}

    defaults = EngineConfig().as_dict()
    del defaults["masks"]  # not an option: set from the selected examples (do they carry masks?)
    assert engine_params(ingest) == engine_params(explain) == defaults
    assert defaults["top_k"] == 5 and defaults["dtype"] == "auto"


def test_validate_against_the_model(t5):
    EngineConfig(layers="0,-1", top_k=16, deletion_steps=16).validate(t5)
    EngineConfig(layers="-2").validate(t5.model.config)
    for bad in (dict(layers="2"), dict(top_k=17), dict(deletion_steps=17), dict(dtype="fp16")):
        EngineConfig(**bad).validate()  # only the model makes these wrong
        with pytest.raises(StcgError):
            EngineConfig(**bad).validate(t5)
    opt = tiny_blip2("opt", seed=2)
    limit = opt.model.config.text_config.max_position_embeddings - opt.model.config.num_query_tokens - 1
    EngineConfig(max_new_tokens=limit).validate(opt)
    with pytest.raises(StcgError, match=f"allowed: 1..{limit}"):
        EngineConfig(max_new_tokens=limit + 1).validate(opt)


def test_hook_layer_counts_from_the_config_match_the_built_model():
    from stcg_model.families.blip2.points import blip2_hook_points, hook_layer_counts
    from stcg_model.testing.tiny import blip2_config

    for kind in ("t5", "opt"):
        for layers, qformer, freq in ((2, 2, 1), (3, 5, 2)):
            from transformers import Blip2ForConditionalGeneration

            cfg = blip2_config(kind, layers=layers, qformer_layers=qformer, cross_attention_frequency=freq)
            model = Blip2ForConditionalGeneration(cfg)
            built = {k: len(p.modules) for k, p in blip2_hook_points(model).items()}
            assert hook_layer_counts(cfg) == built


def test_engine_checks_its_settings_and_from_config_equals_the_keywords(t5):
    from stcg_model.engine.core import STCGEngine

    with pytest.raises(StcgError, match="layer 99 is out of range"):
        STCGEngine(t5, layers="99")
    with pytest.raises(StcgError, match="fraction=2 is out of range"):
        STCGEngine(t5, perturbations="center_mask:fraction=2")
    cfg = EngineConfig(
        perturbations="center_mask,color_shift", layers="last", seed=3, deletion_steps=2, max_new_tokens=4
    )
    a = STCGEngine.from_config(t5, cfg)
    b = STCGEngine(t5, "center_mask,color_shift", layers="last", seed=3, deletion_steps=2, max_new_tokens=4)
    assert a.params == b.params and a.config == cfg
    assert b.config.perturbations == "center_mask,color_shift" and b.config.dtype == "float32"


def test_close_shuts_the_host_thread_pool(t5):
    import threading

    from stcg_model.engine.core import STCGEngine

    with STCGEngine(t5, perturbations="center_mask", deletion_steps=0, host_workers=3) as engine:
        pool = engine._pool
        assert pool is not None
        pool.submit(lambda: None).result()
        assert any(t.name.startswith("stcg-host") for t in threading.enumerate())
    assert engine._pool is None and pool._shutdown
    assert not any(t.name.startswith("stcg-host") and t.is_alive() for t in pool._threads)
    engine.close()  # idempotent


def test_run_identity_keeps_its_old_form():
    """The identity (and so every derived run id) is what the flat IngestConfig gave for the same arguments."""
    from ingest.pipeline import IngestConfig, make_run_id
    from ingest.runs import identity_hash
    from stcg_model.engine.core import RESULTS_VERSION

    cfg = IngestConfig(dataset="easy-vqa", split="test", limit=4)
    old = {
        "results_version": RESULTS_VERSION,
        "model_fingerprint": "fp",
        "dataset": "easy-vqa",
        "split": "test",
        "limit": 4,
        "question_type": None,
        "answer_type": None,
        "sample": None,
        "seed": 0,
        "model": "m",
        "dtype": None,
        "perturbations": "all",
        "layers": "mean",
        "top_k": 5,
        "deletion_steps": 10,
        "max_new_tokens": 10,
    }
    assert cfg.identity("m", "fp") == old
    assert make_run_id(cfg, "m", "fp") == f"run-{identity_hash(old)}"
    with_prompt = IngestConfig(prompt="Q: {question}", dtype="bfloat16", seed=3, top_k=2)
    ident = with_prompt.identity("m", "fp")
    assert ident["prompt"] == "Q: {question}" and ident["dtype"] == "bfloat16" and ident["seed"] == 3
    assert ident["top_k"] == 2 and with_prompt.engine.top_k == 2
    # the legacy flat arguments and an explicit EngineConfig are the same config
    assert IngestConfig(top_k=2, seed=3) == IngestConfig(engine=EngineConfig(top_k=2, seed=3))
    with pytest.raises(TypeError, match="unexpected arguments"):
        IngestConfig(topk=2)


def test_user_registered_perturbations_declare_their_ranges():
    from stcg_model.perturbations import REGISTRY, ParamRange, parse_perturbations, register_perturbation

    @register_perturbation(
        "blur_test", defaults={"radius": 2.0}, ranges={"radius": ParamRange(0.0, 50.0, lo_open=True)}
    )
    def blur(image, params, rng, ctx):
        """Blur (test)."""
        return image

    try:
        assert parse_perturbations("blur_test:radius=3")[0].params == {"radius": 3}
        with pytest.raises(
            StcgError, match=r"perturbation blur_test: radius=0 is out of range; allowed: 0 < radius <= 50"
        ):
            EngineConfig(perturbations="blur_test:radius=0").validate()
    finally:
        REGISTRY.pop("blur_test")
    with pytest.raises(ValueError, match="out of range"):
        register_perturbation("bad_default_test", defaults={"k": 0}, ranges={"k": ParamRange(1, integer=True)})
    with pytest.raises(ValueError, match="without a default"):
        register_perturbation("bad_range_test", defaults={}, ranges={"k": ParamRange(1)})
    assert "bad_default_test" not in REGISTRY and "bad_range_test" not in REGISTRY
