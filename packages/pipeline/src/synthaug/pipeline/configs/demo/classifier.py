"""A small classifier on 32×32 digits: real, synthetic-only (CAS) or mixed.

Variants: ``real`` (default; 20 real images per class), ``synthetic``, ``mixed``.

Command:
    synthaug train-classifier --config demo/classifier:synthetic \
        --config.data.synthetic_dir=runs/digits_synthetic --config.workdir=runs/cls_synthetic
"""

import ml_collections

MODES = ("real", "synthetic", "mixed")


def get_config(variant=None):
    variant = variant or "real"
    if variant not in MODES:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(MODES)}")
    c = ml_collections.ConfigDict()
    c.stage = "train-classifier"
    c.workdir = f"runs/cls_{variant}"
    c.model = dict(name="resnet_tiny", num_classes=10, image_size=32)
    c.data = dict(
        mode=variant,
        real=dict(source="digits", split="train", per_class=20),
        synthetic_dir="runs/digits_synthetic",
        eval_split="test",
    )
    c.train = dict(
        recipe="demo",
        optimizer="sgd",
        epochs=15,
        batch_size=64,
        base_learning_rate=0.05,
        warmup_epochs=1,
        schedule="cosine",
        weight_decay=5e-4,
        momentum=0.9,
        nesterov=True,
    )
    c.hardware = "CPU (2 cores)"
    return c
