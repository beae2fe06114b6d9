"""FID and Inception Score of a synthetic set against ImageNet reference statistics.

Variants:
    train256 (default)  50K samples at 256×256 vs ImageNet train. Paper FID 1.76, IS 239.18.
    val256              50K samples at 256×256 vs ImageNet val. Paper FID 2.81.
    train64             50K samples at 64×64 vs train. Paper FID 1.21, IS 85.77.
    val64               50K samples at 64×64 vs val. Paper FID 2.51.
    cas                 accuracy of a synthetic-only classifier on real val (CAS).
                        Paper 64.96 / 85.66 (256), 69.24 / 88.10 (1024).

Command:
    synthaug evaluate --config paper/evaluate:val256 \
        --config.samples_dir=/runs/sample_256/shards \
        --config.reference=/stats/imagenet_val_256.npz \
        --config.inception_checkpoint=/ckpt/pt_inception-2015-12-05.pth

    synthaug evaluate --config paper/evaluate:cas \
        --config.classifier_dir=/runs/resnet50_synthetic \
        --config.real.source=imagenet_folder --config.real.data_dir=/data/ILSVRC2012 \
        --config.real.split=val   # or imagenet_tfds (split validation), imagenet_tfrecord

Hardware: one TPU-v4 host (4 chips) or one GPU; Inception-v3 features of 50K images.
"""

import ml_collections

PAPER = {
    "train256": dict(fid=1.76, inception_score=239.18, note="IS 239.18 +- 1.14"),
    "val256": dict(fid=2.81, note="FID against ImageNet val"),
    "train64": dict(fid=1.21, inception_score=85.77, note="64x64 samples"),
    "val64": dict(fid=2.51, note="64x64 samples against val"),
    "cas": dict(top1=64.96, top5=85.66, note="1024x1024 samples: 69.24 / 88.10"),
}


def get_config(variant=None):
    variant = variant or "train256"
    if variant not in PAPER:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(PAPER)}")
    c = ml_collections.ConfigDict()
    c.stage = "evaluate"
    c.workdir = f"runs/evaluate_{variant}"
    c.samples_dir = "runs/sample_64/shards" if variant.endswith("64") else "runs/sample_256/shards"
    if variant == "cas":
        c.metrics = ("accuracy",)
        c.classifier_dir = "runs/resnet50_synthetic"
        c.real = dict(source="imagenet_tfds", data_dir="", split="validation")
    else:
        c.metrics = ("fid", "inception_score")
        split = "train" if variant.startswith("train") else "val"
        size = variant.removeprefix("train").removeprefix("val")
        c.reference = f"stats/imagenet_{split}_{size}.npz"
    c.num_samples = 50_000
    c.hardware = "one TPU-v4 host (4 chips) or one GPU"
    c.paper = PAPER[variant]
    return c
