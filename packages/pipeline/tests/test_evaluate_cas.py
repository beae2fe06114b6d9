"""``synthaug evaluate --config paper/evaluate:cas`` on ImageNet-layout data (folders, TFRecords)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug.pipeline import cli

CLASSES = (0, 1, 2, 3, 4, 5, 6)
VAL_PER_CLASS = 3


def _images(label: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([label, seed])
    colour = np.array([(label * 37) % 256, (label * 91 + 60) % 256, (label * 53 + 120) % 256])
    noise = rng.integers(-40, 40, (n, 32, 40, 3))
    return np.clip(colour[None, None, None] + noise, 0, 255).astype(np.uint8)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """Folder layout (train 6 / val 3 per class, 7 classes) and the val split as TFRecords."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("imagenet")
    val_items = []
    for split, n in (("train", 6), ("val", VAL_PER_CLASS)):
        for label in CLASSES:
            d = root / "folder" / split / data.label_to_wnid(label)
            d.mkdir(parents=True)
            for i, im in enumerate(_images(label, n, seed=len(split))):
                (d / f"{split}_{label}_{i}.png").write_bytes(_png(im))
                if split == "val":
                    val_items.append((_png(im), label))
    rec = root / "records"
    rec.mkdir()
    for s in range(2):  # two shards, records interleaved across them
        with tf.io.TFRecordWriter(str(rec / f"val-{s:05d}-of-00002")) as w:
            for encoded, label in val_items[s::2]:
                feat = {
                    "image/encoded": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[encoded])
                    ),
                    "image/class/label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[label])
                    ),
                }
                w.write(
                    tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()
                )
    return root


@pytest.fixture(scope="module")
def classifier(imagenet, tmp_path_factory):
    work = tmp_path_factory.mktemp("cls") / "resnet"
    argv = [
        "train-classifier",
        "--config",
        "paper/resnet50:real",
        "--config.recipe.model=resnet_tiny",
        "--config.recipe.image_size=32",
        "--config.recipe.num_classes=7",
        "--config.recipe.epochs=2",
        "--config.recipe.batch_size=8",
        "--config.recipe.eval_batch_size=8",
        "--config.recipe.warmup_epochs=0",
        "--config.recipe.base_lr=0.4",
        "--config.data.real.source=imagenet_folder",
        f"--config.data.real.data_dir={imagenet / 'folder'}",
        "--config.data.eval_split=val",
        f"--config.workdir={work}",
    ]
    assert cli.main(argv) == 0
    return work, json.loads((work / "metrics.json").read_text())["train_classifier"]


def _evaluate(tmp_path, classifier_dir, source, data_dir, capsys):
    work = tmp_path / f"eval_{source}"
    argv = [
        "evaluate",
        "--config",
        "paper/evaluate:cas",
        f"--config.classifier_dir={classifier_dir}",
        f"--config.real.source={source}",
        f"--config.real.data_dir={data_dir}",
        "--config.real.split=val",
        "--config.batch_size=5",  # 21 images: four full batches and a padded one
        f"--config.workdir={work}",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    return json.loads((work / "metrics.json").read_text())["evaluate"]


def _reference_accuracy(classifier_dir, root):
    """Top-1/top-5 of the classifier on val decoded with PIL and scored in memory."""
    import tensorflow as tf

    from synthaug import classifiers as cl
    from synthaug.pipeline.classify import load_classifier

    recipe, state = load_classifier(classifier_dir)
    images, labels = [], []
    for label in CLASSES:
        for f in sorted((root / "folder" / "val" / data.label_to_wnid(label)).iterdir()):
            img = np.asarray(Image.open(f).convert("RGB"))
            images.append(data.eval_resize_crop(tf.constant(img), resize_size=37, crop_size=32))
            labels.append(label)
    res = cl.evaluate(recipe, state, np.stack(images), np.asarray(labels, np.int32))
    return res


def test_cas_on_imagenet_folder_and_tfrecords(tmp_path, imagenet, classifier, capsys):
    work, trained = classifier
    folder = _evaluate(tmp_path, work, "imagenet_folder", imagenet / "folder", capsys)
    records = _evaluate(tmp_path, work, "imagenet_tfrecord", imagenet / "records", capsys)
    ref = _reference_accuracy(work, imagenet)
    n = len(CLASSES) * VAL_PER_CLASS
    for res in (folder, records):
        assert res["eval_examples"] == n  # every val image once, padding not counted
        assert res["top1"] == pytest.approx(ref["top1"], abs=1e-12)
        assert res["top5"] == pytest.approx(ref["top5"], abs=1e-12)
        assert res["paper"]["top1"] == 64.96  # the config's paper numbers travel along
    # 7 classes: top-5 is not trivially 1, and the numbers agree with the training run's
    # own per-epoch evaluation of the same split.
    assert folder["top1"] == pytest.approx(trained["top1"], abs=1e-12)
    assert folder["top5"] == pytest.approx(trained["top5"], abs=1e-12)
    assert folder["top1"] > 1.5 / len(CLASSES)  # learned something: above chance


def test_cas_missing_data_dir_is_one_line_exit_2(tmp_path, classifier, capsys):
    work, _ = classifier
    argv = [
        "evaluate",
        "--config",
        "paper/evaluate:cas",
        f"--config.classifier_dir={work}",
        "--config.real.source=imagenet_folder",
        f"--config.real.data_dir={tmp_path / 'nowhere'}",
        f"--config.workdir={tmp_path / 'out'}",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nowhere" in err and "data directory" in err
    assert not (tmp_path / "out").exists()
