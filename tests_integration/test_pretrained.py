"""Public pretrained generators end to end: a tiny random ADM cascade and a tiny random
DeepFloyd IF cascade, written in their original formats by their reference implementations
(``torch.save`` of guided-diffusion state dicts; diffusers ``save_pretrained``: see
tools/fixtures/make_pretrained_reference.py), are imported with ``synthaug import-weights``;
``synthaug sample`` writes class-balanced shards from each (ADM: class labels, learned-range
variance, the upsampler's plain resize; IF: T5 prompts, guidance against the empty prompt,
the noise-augmented SR input) and ``synthaug train-classifier`` trains on the IF shards."""

from __future__ import annotations

import json
import pathlib

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
