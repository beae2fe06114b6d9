"""A small classifier on 32×32 digits: real, synthetic-only (CAS) or mixed.

Variants: ``real`` (default; 20 real images per class), ``synthetic``, ``mixed``. The
classifier is ``synthaug.classifiers.demo_recipe`` (``resnet_tiny``) under ``recipe``,
with SGD at lr 0.05 × batch/256 for 15 epochs.

Command:
    synthaug train-classifier --config demo/classifier:synthetic \
        --config.data.synthetic_dir=runs/digits_synthetic --config.workdir=runs/cls_synthetic
"""

from synthaug import classifiers as cl
from synthaug.pipeline.schemas import classifier_config

MODES = ("real", "synthetic", "mixed")


def get_config(variant=None):
    variant = variant or "real"
    if variant not in MODES:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(MODES)}")
    recipe = cl.demo_recipe("resnet_tiny", num_classes=10, batch_size=64, epochs=15, image_size=32)
    recipe.update(optimizer="sgd", base_lr=0.05, lr_batch_base=256, warmup_epochs=1.0)
    recipe.update(schedule="cosine", weight_decay=5e-4, momentum=0.9, nesterov=True)
    c = classifier_config(recipe)
    c.workdir = f"runs/cls_{variant}"
    c.data.update(mode=variant, synthetic_dir="runs/digits_synthetic", eval_split="test")
    c.data.real.update(source="digits", split="train", per_class=20)
    c.hardware = "CPU (2 cores)"
    return c
