"""Public pretrained generators end to end: a tiny random ADM cascade and a tiny random
DeepFloyd IF cascade, written in their original formats by their reference implementations
(``torch.save`` of guided-diffusion state dicts; diffusers ``save_pretrained``: see
tools/fixtures/make_pretrained_reference.py), are imported with ``synthaug import-weights``;
``synthaug sample`` writes class-balanced shards from each (ADM: class labels, learned-range
variance, the upsampler's plain resize; IF: T5 prompts, guidance against the empty prompt,
the noise-augmented SR input) and ``synthaug train-classifier`` trains on the IF shards.

Fine-tuning from an imported checkpoint: the tiny ADM is imported, ``synthaug finetune`` with
``init_checkpoint`` pointing at it trains one step on the digits (class labels as the
condition), and ``sample`` writes shards from the fine-tuned workdir."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

FIX = pathlib.Path(__file__).resolve().parents[1] / "packages/pipeline/tests/fixtures/pretrained"
CASCADES = {
    "adm": [("adm", "adm_tiny.pt", "tiny_adm"), ("adm", "adm_tiny_sr.pt", "tiny_adm_sr")],
    "deepfloyd-if": [
        ("deepfloyd-if", "if_tiny", "tiny_if"),
        ("deepfloyd-if", "if_tiny_sr", "tiny_if_sr"),
    ],
}


@pytest.fixture(scope="module")
def shards(cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    out = {}
    for name, stages in CASCADES.items():
        ckpts = []
        for i, (source, rel, preset) in enumerate(stages):
            dest = root / f"{name}_{i}"
            proc = cli.run(
                "import-weights",
                "--from",
                source,
                str(FIX / rel),
                "--out",
                str(dest),
                "--preset",
                preset,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert json.loads((dest / "model.json").read_text())["preset"] == preset
            ckpts.append((dest, preset))
        guidance = "3.0" if name == "deepfloyd-if" else "1.0"
        proc = cli.run(
            "sample",
            "--config",
            "demo/sample",
            f"--config.base.preset={ckpts[0][1]}",
            f"--config.base.checkpoint={ckpts[0][0]}",
            f"--config.sr1.preset={ckpts[1][1]}",
            f"--config.sr1.checkpoint={ckpts[1][0]}",
            f"--config.base.guidance={guidance}",
            "--config.sr1.aug_level=0.25",
            "--config.base.steps=4",
            "--config.sr1.steps=2",
            "--config.per_class=1",
            "--config.shard_size=5",
            "--config.batch_size=5",
            f"--config.out_dir={root / f'{name}_shards'}",
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[name] = root / f"{name}_shards"
    return out


@pytest.mark.parametrize("name", sorted(CASCADES))
def test_sample_writes_balanced_shards_from_imported_models(shards, name):
    manifest = json.loads((shards[name] / "manifest.json").read_text())
    assert manifest["num_examples"] == 10 and manifest["image_size"] == [32, 32]
    assert manifest["num_shards"] == 2
    assert manifest["count_per_class"] == {str(k): 1 for k in range(10)}


def test_train_classifier_reads_the_shards(cli, shards, tmp_path):
    work = tmp_path / "cls"
    proc = cli.run(
        "train-classifier",
        "--config",
        "demo/classifier:synthetic",
        f"--config.data.synthetic_dir={shards['deepfloyd-if']}",
        f"--config.workdir={work}",
        "--config.recipe.epochs=1",
        "--config.recipe.batch_size=8",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((work / "metrics.json").read_text())["train_classifier"]
    assert summary["mode"] == "synthetic" and summary["train_examples"] == 10


# A finetune config of the tiny ADM on the digits (16x16, 10 classes): one Adam step at
# learning rate LR, no warmup, the checkpoint of that step kept.
LR = 1e-3
ADM_FINETUNE = f"""
from synthaug.pipeline.schemas import finetune_config


def get_config():
    c = finetune_config("tiny_adm")
    c.data.update(source="digits", split="train")
    c.optimizer.update(name="adam", learning_rate={LR}, warmup_steps=0, decay_steps=10)
    c.train.update(num_steps=1, batch_size=4, save_every=1, log_every=1, ema_decay=0.5)
    return c
"""


@pytest.fixture(scope="module")
def adm_finetuned(cli, tmp_path_factory):
    """An imported tiny ADM (guided-diffusion's own ``torch.save``) and a finetune workdir
    trained one step from it."""
    root = tmp_path_factory.mktemp("adm_finetune")
    imported = root / "imported"
    proc = cli.run(
        "import-weights", "--from", "adm", str(FIX / "adm_tiny.pt"), "--out", str(imported),
        "--preset", "tiny_adm",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = root / "adm_finetune.py"
    config.write_text(ADM_FINETUNE)
    work = root / "finetuned"
    proc = cli.run(
        "finetune",
        "--config",
        str(config),
        f"--config.workdir={work}",
        f"--config.init_checkpoint={imported}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return imported, work


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        out.update(_flat(v, key) if isinstance(v, dict) else {key: np.asarray(v)})
    return out


def test_finetune_starts_from_the_imported_checkpoint(adm_finetuned):
    from synthaug import diffusion_core as dc

    imported, work = adm_finetuned
    start = _flat(dc.load_params(imported / "checkpoints"))
    after = _flat(dc.load_params(work / "checkpoints", step=1, which="params"))
    assert sorted(after) == sorted(start)
    # One Adam step moves every parameter by at most the learning rate: the step started
    # from the imported values (drawn from N(0, 0.2^2) by the fixture tool; no fresh
    # initialisation lies within 1e-3 of all 356,102 of them), and it did train.
    moved = max(float(np.max(np.abs(after[k] - start[k]))) for k in start)
    assert 0 < moved <= LR * 1.001
    summary = json.loads((work / "metrics.json").read_text())["finetune"]
    assert summary["steps"] == 1 and np.isfinite(summary["final_loss"])
    assert json.loads((work / "model.json").read_text())["preset"] == "tiny_adm"


def test_sample_writes_shards_from_the_finetuned_workdir(cli, adm_finetuned, tmp_path):
    _, work = adm_finetuned
    out = tmp_path / "shards"
    proc = cli.run(
        "sample",
        "--config",
        "demo/sample",
        "--config.base.preset=tiny_adm",
        f"--config.base.checkpoint={work}",
        "--config.base.guidance=1.0",
        "--config.base.steps=4",
        "--config.sr1.enabled=false",
        "--config.per_class=1",
        "--config.shard_size=5",
        "--config.batch_size=5",
        f"--config.out_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_examples"] == 10 and manifest["image_size"] == [16, 16]
    assert manifest["count_per_class"] == {str(k): 1 for k in range(10)}
