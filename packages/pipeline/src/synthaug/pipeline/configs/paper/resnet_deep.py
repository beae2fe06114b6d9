"""ResNet-101 and ResNet-152 on real and real + 1.2M synthetic ImageNet.

Variants: ``r101_real``, ``r101_mixed``, ``r152_real``, ``r152_mixed``.

Command:
    synthaug train-classifier --config paper/resnet_deep:r152_mixed \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_256/shards

Hardware: sized for 32 TPU-v4 chips (v4-64), batch 1024, 90 epochs (the ResNet-50 recipe,
``synthaug.classifiers.resnet_recipe``).
Paper top-1: ResNet-101 78.15 → 79.74; ResNet-152 78.59 → 80.15 (real → real + generated).
"""

from synthaug import classifiers as cl
from synthaug.pipeline.schemas import classifier_config

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
    c = classifier_config(cl.resnet_recipe(1024, 90, model=name, num_classes=1000))
    c.workdir = f"runs/{variant}"
    c.data.update(
        mode=mode,
        synthetic_dir="runs/sample_256/shards",
        synthetic_images=1_200_000 if mode == "mixed" else 0,
    )
    c.data.real.update(source="imagenet_tfds", data_dir="", split="train")
    c.hardware = "32 TPU-v4 chips (v4-64), batch 1024, 90 epochs"
    c.paper = dict(top1=top1, note=f"{name} {mode}")
    return c
