"""train-classifier streaming from imagenet-data tf.data pipelines (the paper's configs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug.classifiers import get_model
from synthaug.pipeline import cli
from synthaug.pipeline.classify import load_classifier

CLASSES = tuple(range(7))  # more than 5: top-5 is not trivially right
COLOURS = np.array(
    [
        [220, 40, 40],
        [40, 220, 40],
        [40, 40, 220],
        [220, 220, 40],
        [220, 40, 220],
        [40, 220, 220],
        [128, 128, 128],
    ]
)


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
        f"--config.recipe.num_classes={len(CLASSES)}",
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
    assert real == 12 * len(CLASSES) and syn == 8 * len(CLASSES)
    assert s["train_examples"] == (real + syn) // 8 * 8
    n_val = 4 * len(CLASSES)
    assert s["eval_examples"] == n_val  # the whole val split, once
    # Top-1 and top-5 counts equal those of the saved classifier's logits ranked in NumPy,
    # on the val images preprocessed as the evaluation does (resize 37, center crop 32).
    recipe, state = load_classifier(work)
    assert recipe.num_classes == 7
    images, labels = [], []
    for label in CLASSES:
        for path in sorted((tiny_imagenet / "real" / "val" / data.label_to_wnid(label)).iterdir()):
            img = np.asarray(Image.open(path).convert("RGB"))
            images.append(data.eval_resize_crop(img, resize_size=37, crop_size=32).numpy())
            labels.append(label)
    x = (np.stack(images) / 255.0 - np.asarray(recipe.mean)) / np.asarray(recipe.std)
    model = get_model(recipe.model, recipe.num_classes, **recipe.model_kwargs.to_dict())
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = np.asarray(model.apply(variables, x.astype(np.float32)))
    ranks = np.argsort(-logits, axis=1)
    labels = np.asarray(labels)
    top1 = int(np.sum(ranks[:, 0] == labels))
    top5 = int(np.sum(np.any(ranks[:, :5] == labels[:, None], axis=1)))
    assert round(s["top1"] * n_val) == top1 and round(s["top5"] * n_val) == top5
    assert top1 <= top5 <= n_val
    assert (work / "checkpoints").is_dir() and (work / "classifier.json").is_file()
    # Resuming a finished run changes nothing and trains no further step.
    again, _ = _train(tmp_path, tiny_imagenet, mode, capsys)
    assert again["top1"] == s["top1"]
