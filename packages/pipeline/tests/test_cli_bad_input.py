"""Bad input at the command line: one line naming the input, exit code 2, nothing changed.

Each case runs ``synthaug.pipeline.cli.main`` and compares a listing of the output directory
(every file with its SHA-256) before and after.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from synthaug.pipeline import cli

# -- the command line itself ----------------------------------------------------------------


def test_override_without_value_does_not_swallow_the_next_flag(
    tmp_path, monkeypatch, cli_fails, dir_listing
):
    monkeypatch.chdir(tmp_path)
    cli_fails(
        [
            "train-classifier",
            "--config",
            "demo/classifier",
            "--config.workdir",
            "--config.recipe.epochs=5",
        ],
        "--config.workdir has no value",
    )
    cli_fails(["sample", "--config", "demo/sample", "--config.per_class"], "per_class")
    assert dir_listing(tmp_path) == {}


def test_quick_is_the_quick_variant_of_the_given_config(capsys, tmp_path, cli_fails):
    assert cli.main(["demo", "--config", "demo/default", "--quick", "--help"]) == 0
    out = capsys.readouterr().out
    assert "fast_compile = True" in out and "base.train.num_steps = 40" in out
    assert cli.main(["demo", "--config", "demo/default", "--help"]) == 0
    assert "base.train.num_steps = 1200" in capsys.readouterr().out
    cli_fails(["demo", "--config", "demo/default:full", "--quick"], "--quick", "'full'")
    own = tmp_path / "mine.py"
    own.write_text("def get_config():\n    return {'stage': 'demo'}\n")
    cli_fails(["demo", "--config", own, "--quick", "--out", tmp_path / "o"], "quick")
    assert not (tmp_path / "o").exists()


def test_help_shows_the_override_syntax_and_the_keys(capsys):
    assert cli.main(["finetune", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config.KEY=VALUE" in out and "ml_collections.config_flags" in out
    for key in ("train.num_steps = 210000", "diffusion.p_uncond = 0.1", "mesh.data = -1"):
        assert key in out, key
    assert cli.main(["train-classifier", "--config", "paper/deit_s", "--help"]) == 0
    out = capsys.readouterr().out
    assert "recipe.base_lr = 0.0005" in out and "recipe.model_kwargs = " in out
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "--config.a.b=VALUE" in capsys.readouterr().out


def test_output_path_that_is_a_file_or_under_one(tmp_path, cli_fails, dir_listing):
    f = tmp_path / "a_file"
    f.write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"sample": {"num_examples": 3}}')
    before = dir_listing(tmp_path)
    base = ["train-classifier", "--config", "demo/classifier"]
    cli_fails([*base, f"--config.workdir={f}"], str(f), "not a directory")
    cli_fails([*base, f"--config.workdir={f}/sub"], f"{f}/sub", "Not a directory")
    cli_fails(["report", tmp_path / "run", "--out", f / "r.md"], str(f))
    assert dir_listing(tmp_path) == before


def test_unwritable_output_path(tmp_path, cli_fails):
    if pathlib.Path("/sys/kernel").is_dir():  # read-only for every user, root included
        target = pathlib.Path("/sys/synthaug-test/out")
    elif os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "out"
    else:
        pytest.skip("no unwritable directory here")
    cli_fails(
        ["train-classifier", "--config", "demo/classifier", f"--config.workdir={target}"],
        "synthaug-test" if "sys" in str(target) else str(target),
    )


def test_malformed_metrics_json_is_named(tmp_path, cli_fails):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "metrics.json").write_text('{"finetune": {"steps": 3,')
    out = tmp_path / "report.md"
    cli_fails(["report", run, "--out", out], f"{run / 'metrics.json'}", "not valid JSON")
    (run / "metrics.json").write_text('{"scalars": {"train/loss": 3}}')
    cli_fails(["report", run, "--out", out], f"{run / 'metrics.json'}", "scalars")
    (run / "metrics.json").write_text("[1, 2]")
    cli_fails(["report", run, "--out", out], "metrics.json", "not a JSON object")
    assert not out.exists()


def test_sampler_settings_are_checked_before_anything_is_written(tmp_path, cli_fails):
    out = tmp_path / "out"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    base = [
        "sample",
        "--config",
        "demo/sample",
        f"--config.out_dir={out}",
        f"--config.base.checkpoint={ckpt}",
        f"--config.sr1.checkpoint={ckpt}",
    ]
    for override, needle in (
        ("base.guidance=nan", "base.guidance must be a finite number >= 0"),
        ("base.guidance=inf", "base.guidance"),
        ("sr1.guidance=-1", "sr1.guidance"),
        ("base.log_var_mix=1.5", "base.log_var_mix must lie in [0, 1]"),
        ("sr1.log_var_mix=nan", "sr1.log_var_mix"),
        ("base.threshold_percentile=0", "base.threshold_percentile must lie in (0, 100]"),
        ("base.threshold_percentile=100.5", "threshold_percentile"),
        ("base.steps=0", "base.steps must lie in [1, 1000]"),
        ("sr1.steps=-3", "sr1.steps"),
        ("base.aug_level=2", "base.aug_level"),
        ("batch_size=0", "batch_size must be >= 1"),
    ):
        cli_fails([*base, f"--config.{override}"], needle)
    assert not out.exists()  # no writer.json, nothing


def test_non_positive_step_counts_are_refused_before_writing(tmp_path, cli_fails, dir_listing):
    work = tmp_path / "w"
    for argv, needle in (
        (["finetune", "--config", "demo/finetune:base", "--config.train.num_steps=0"], "num_steps"),
        (
            ["finetune", "--config", "demo/finetune:sr", "--config.train.batch_size=-1"],
            "batch_size",
        ),
        (["train-classifier", "--config", "demo/classifier", "--config.recipe.epochs=0"], "epochs"),
        (
            ["train-classifier", "--config", "demo/classifier", "--config.recipe.total_steps=-5"],
            "recipe.total_steps must be >= 0",
        ),
    ):
        cli_fails([*argv, f"--config.workdir={work}"], needle, ">= ")
    base = ["finetune", "--config", "demo/finetune:base", f"--config.workdir={work}"]
    cli_fails([*base, "--config.train.grad_accum_steps=0"], "train.grad_accum_steps must be >= 1")
    cli_fails(
        [*base, "--config.train.batch_size=6", "--config.train.grad_accum_steps=4"],
        "train.grad_accum_steps 4 must divide train.batch_size 6",
    )
    assert dir_listing(tmp_path) == {}


def test_finetune_rejects_an_unknown_lowres_order(tmp_path, cli_fails, dir_listing):
    for key, value in (("aug_order", "upsample_first"), ("resize_method", "area")):
        cli_fails(
            [
                "finetune",
                "--config",
                "demo/finetune:sr",
                f"--config.workdir={tmp_path / 'w'}",
                f"--config.diffusion.{key}={value}",
            ],
            f"diffusion.{key} must be one of",
        )
    assert dir_listing(tmp_path) == {}
