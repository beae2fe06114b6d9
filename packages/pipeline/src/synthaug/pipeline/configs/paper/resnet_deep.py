"""ResNet-101 and ResNet-152 on real and real + 1.2M synthetic ImageNet.

Variants: ``r101_real``, ``r101_mixed``, ``r152_real``, ``r152_mixed``.

Command:
    synthaug train-classifier --config paper/resnet_deep:r152_mixed \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_256/shards

Hardware: sized for 32 TPU-v4 chips (v4-64), batch 1024, 90 epochs (the ResNet-50 recipe).
Paper top-1: ResNet-101 78.15 → 79.74; ResNet-152 78.59 → 80.15 (real → real + generated).
"""

import ml_collections

PAPER = {
    "r101_real": ("resnet101", 78.15),
    "r101_mixed": ("resnet101", 79.74),
    "r152_real": ("resnet152", 78.59),
    "r152_mixed": ("resnet152", 80.15),
}


def get_config(variant=None):
    variant = variant or "r101_real"
    if variant not in PAPER:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(PAPER)}")
    name, top1 = PAPER[variant]
    mode = variant.split("_")[1]
    c = ml_collections.ConfigDict()
    c.stage = "train-classifier"
    c.workdir = f"runs/{variant}"
    c.model = dict(name=name, num_classes=1000, image_size=224)
    c.data = dict(
        mode=mode,
        real=dict(source="imagenet_tfds", data_dir="", split="train"),
        synthetic_dir="runs/sample_256/shards",
        synthetic_images=1_200_000 if mode == "mixed" else 0,
    )
    c.train = dict(
        recipe="resnet",
        optimizer="sgd",
        epochs=90,
        batch_size=1024,
        base_learning_rate=0.1,
        warmup_epochs=5,
        schedule="cosine",
        weight_decay=1e-4,
        momentum=0.9,
        nesterov=True,
    )
    c.hardware = "32 TPU-v4 chips (v4-64), batch 1024, 90 epochs"
    c.paper = dict(top1=top1, note=f"{name} {mode}")
    return c
