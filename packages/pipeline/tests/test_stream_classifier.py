"""train-classifier streaming from imagenet-data tf.data pipelines (the paper's configs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug.pipeline import cli

CLASSES = (0, 1, 2)
COLOURS = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]])


def _images(label: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([label, seed])
    noise = rng.integers(-30, 30, (n, 32, 32, 3))
    return np.clip(COLOURS[label][None, None, None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """A folder-layout real set (train 12 / val 4 per class) and synthetic TFRecord shards."""
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 12), ("val", 4)):
        for label in CLASSES:
            d = root / "real" / split / data.label_to_wnid(label)
            d.mkdir(parents=True)
            for i, im in enumerate(_images(label, n, seed=len(split))):
                Image.fromarray(im).save(d / f"{split}_{label}_{i}.png")
    syn = root / "synthetic"
    writer = data.SyntheticShardWriter(syn, 10, metadata={"note": "test shards"})
    labels = np.tile(np.asarray(CLASSES), 8)
    writer.write(
        np.concatenate([_images(k, 1, seed=100 + i) for i, k in enumerate(labels)]), labels
    )
    writer.close()
    return root


def _train(tmp_path, root, mode, capsys):
    work = tmp_path / f"cls_{mode}"
    argv = [
        "train-classifier",
        "--config",
        f"paper/resnet50:{mode}",
        "--config.recipe.model=resnet_tiny",
        "--config.recipe.image_size=32",
        "--config.recipe.epochs=2",
        "--config.recipe.batch_size=8",
        "--config.recipe.eval_batch_size=8",
        "--config.recipe.warmup_epochs=0",
        "--config.recipe.base_lr=0.4",
        "--config.data.real.source=imagenet_folder",
        f"--config.data.real.data_dir={root / 'real'}",
        "--config.data.eval_split=val",
        f"--config.data.synthetic_dir={root / 'synthetic'}",
        "--config.data.synthetic_images=0",
        f"--config.workdir={work}",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    return json.loads((work / "metrics.json").read_text())["train_classifier"], work


def test_train_classifier_streams_mixed_real_and_synthetic_data(tmp_path, tiny_imagenet, capsys):
    mode = "mixed"
    s, work = _train(tmp_path, tiny_imagenet, mode, capsys)
    assert s["streaming"] is True
    real, syn = s["composition"]["real"], s["composition"]["synthetic"]
    assert real == 36 and syn == 24
    assert s["train_examples"] == (real + syn) // 8 * 8
    assert s["eval_examples"] == 12  # the whole val split, once
    assert 0.0 <= s["top1"] <= 1.0 and s["top5"] == 1.0  # 3 classes: top-5 always right
    assert (work / "checkpoints").is_dir() and (work / "classifier.json").is_file()
    # Resuming a finished run changes nothing and trains no further step.
    again, _ = _train(tmp_path, tiny_imagenet, mode, capsys)
    assert again["top1"] == s["top1"]
