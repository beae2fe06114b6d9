"""A run directory belongs to one run: tiny real runs of finetune, sample and train-classifier,
then reruns with another config (refused: exit 2, one line naming the key, nothing changed),
with ``overwrite``, over corrupted shards, and from a checkpoint whose parameters are NaN."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from synthaug.pipeline import cli
from synthaug.pipeline.rundir import RUN_FILE

TINY_FINETUNE = [
    "--config.train.num_steps=2",
    "--config.train.batch_size=4",
    "--config.train.save_every=2",
    "--config.train.log_every=1",
    "--config.optimizer.warmup_steps=1",
    "--config.optimizer.decay_steps=2",
]


def ok(capsys, argv) -> None:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0, err


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, one_level_unet):
    work = tmp_path_factory.mktemp("runs") / "base"
    argv = ["finetune", "--config", "demo/finetune:base", f"--config.workdir={work}"]
    argv += [f"--config.{o}" for o in one_level_unet]
    assert cli.main([*argv, *TINY_FINETUNE]) == 0
    return work, argv


def sample_args(out, checkpoint, *extra):
    return [
        "sample",
        "--config",
        "demo/sample",
        f"--config.base.checkpoint={checkpoint}",
        "--config.sr1.enabled=false",
        "--config.per_class=1",
        "--config.shard_size=5",
        "--config.batch_size=5",
        "--config.base.steps=2",
        f"--config.out_dir={out}",
        *extra,
    ]


@pytest.fixture(scope="module")
def sample_run(base_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "shards"
    assert cli.main(sample_args(out, base_run[0])) == 0
    return out


def test_finetune_records_its_config_and_model(base_run):
    work, _ = base_run
    run = json.loads((work / RUN_FILE).read_text())
    assert run["stage"] == "finetune" and len(run["fingerprint"]) == 64
    assert run["config"]["preset"] == "tiny_base" and run["config"]["train.seed"] == 0
    model = json.loads((work / "model.json").read_text())
    assert model["config"]["model"]["model_channels"] == 16
    assert model["config"]["diffusion"]["prediction_type"] == "v"


def test_finetune_refuses_another_config(base_run, cli_fails, dir_listing):
    work, argv = base_run
    before = dir_listing(work)
    cli_fails([*argv, *TINY_FINETUNE, "--config.train.seed=1"], str(work), "train.seed 0 -> 1")
    cli_fails(
        ["finetune", "--config", "demo/finetune:sr", f"--config.workdir={work}", *TINY_FINETUNE],
        "preset 'tiny_base' -> 'tiny_sr'",
        "--config.overwrite",
    )
    assert dir_listing(work) == before  # model.json, checkpoints, run.json untouched


def test_unrecorded_outputs_are_refused(tmp_path, cli_fails, dir_listing):
    work = tmp_path / "w"
    (work / "checkpoints").mkdir(parents=True)
    (work / "model.json").write_text('{"preset": "tiny_base", "text_dim": 64}')
    before = dir_listing(work)
    argv = ["finetune", "--config", "demo/finetune:base", f"--config.workdir={work}"]
    cli_fails([*argv, *TINY_FINETUNE], "no run.json", "checkpoints")
    assert dir_listing(work) == before


def test_sample_refuses_another_seed_and_checks_shards(
    base_run, sample_run, cli_fails, dir_listing
):
    out = sample_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_examples"] == 10 and manifest["num_shards"] == 2
    before = dir_listing(out)
    cli_fails(sample_args(out, base_run[0], "--config.seed=1"), "seed 0 -> 1", str(out))
    cli_fails(sample_args(out, base_run[0], "--config.base.guidance=3.0"), "base.guidance")
    assert dir_listing(out) == before
    # A larger per_class extends the set; the same config reopens it. A shard that lost its
    # tail (or disagrees with its sidecar) is found before anything is written.
    shard = out / "synthetic-00001.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    before = dir_listing(out)
    cli_fails(sample_args(out, base_run[0]), "cannot resume", "synthetic-00001.tfrecord")
    assert dir_listing(out) == before
    shard.write_bytes(data)
    side = out / "synthetic-00001.tfrecord.json"
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "count": 4}))
    cli_fails(sample_args(out, base_run[0]), "holds 5 records", "counts 4")
    side.write_text(json.dumps(info))


def test_sample_stops_at_a_batch_of_nan_samples(base_run, tmp_path, cli_fails):
    from synthaug import diffusion_core as dc
    from synthaug.io.checkpoint import Checkpointer

    params = dc.load_params(base_run[0] / "checkpoints")
    nan_model = tmp_path / "nan_model"
    with Checkpointer(nan_model / "checkpoints", async_save=False) as ckpt:
        nan = {"ema_params": __import__("jax").tree.map(lambda p: np.full_like(p, np.nan), params)}
        ckpt.save(0, nan, force=True)
    (nan_model / "model.json").write_text((base_run[0] / "model.json").read_text())
    out = tmp_path / "out"
    cli_fails(sample_args(out, nan_model), "examples 0..4", "NaN or infinite")
    assert not list(out.glob("synthetic-*.tfrecord")) and not (out / "manifest.json").exists()


def test_train_classifier_refuses_another_config_and_overwrite_replaces(
    capsys, tmp_path, cli_fails, dir_listing
):
    work = tmp_path / "cls"
    argv = [
        "train-classifier",
        "--config",
        "demo/classifier",
        f"--config.workdir={work}",
        "--config.recipe.epochs=1",
        "--config.recipe.batch_size=10",
        "--config.data.real.per_class=2",
    ]
    ok(capsys, argv)
    recipe = json.loads((work / "classifier.json").read_text())
    assert recipe["epochs"] == 1
    before = dir_listing(work)
    cli_fails([*argv, "--config.recipe.base_lr=0.3"], "recipe.base_lr 0.05 -> 0.3")
    assert dir_listing(work) == before
    ok(capsys, [*argv, "--config.recipe.base_lr=0.3", "--config.overwrite"])
    assert json.loads((work / "classifier.json").read_text())["base_lr"] == 0.3
    assert json.loads((work / RUN_FILE).read_text())["config"]["recipe.base_lr"] == 0.3


def test_demo_refuses_an_output_of_another_seed(tmp_path, cli_fails, dir_listing):
    from synthaug.pipeline import rundir
    from synthaug.pipeline.config import load_config

    out = tmp_path / "demo_out"
    rundir.claim(out, load_config("demo/default:quick", "demo"), "demo", what="out")
    (out / "report.md").write_text("# an earlier demo\n")
    before = dir_listing(out)
    cli_fails(["demo", "--quick", "--out", out, "--config.seed=1"], "seed 0 -> 1", str(out))
    assert dir_listing(out) == before


def test_overwrite_removes_only_what_the_stage_owns(tmp_path):
    from synthaug.pipeline import rundir
    from synthaug.pipeline.config import load_config

    cfg = load_config("demo/finetune:base", "finetune", [f"workdir={tmp_path}"])
    rundir.claim(tmp_path, cfg, "finetune")
    for name in ("checkpoints/1/x", "model.json", "tb/events", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("old")
    other = load_config("demo/finetune:base", "finetune", ["train.seed=3", "overwrite=true"])
    rundir.claim(tmp_path, other, "finetune")
    assert sorted(p.name for p in pathlib.Path(tmp_path).iterdir()) == ["notes.txt", "run.json"]
