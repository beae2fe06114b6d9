"""ResNet-50 top-1 against total training-set size: real 1.2M plus generated 256×256 images.

Variants (total images): ``1.2M`` (real only), ``2.4M``, ``3.6M``, ``4.8M``, ``6.0M``, ``12M``.
Each needs the matching synthetic set: ``synthaug sample --config paper/sample_final:Nx``
with N = total/1.2M − 1 (1x, 2x, 3x, 4x, 9x).

Command:
    for n in 1.2M 2.4M 3.6M 4.8M 6.0M 12M; do
      synthaug train-classifier --config paper/data_size:$n \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_9x/shards
    done

Hardware: sized for 32 TPU-v4 chips (v4-64), batch 1024, 90 epochs (epochs count passes over
the enlarged set; ``synthaug.classifiers.resnet_recipe``).
Paper top-1: 1.2M 76.39, 2.4M 77.61, 3.6M 77.16, 4.8M 76.52, 6.0M 76.09, 12M 75.04 — gains
hold up to about 3× real; beyond that accuracy falls.
"""

from synthaug import classifiers as cl
from synthaug.pipeline.schemas import classifier_config

PAPER = {"1.2M": 76.39, "2.4M": 77.61, "3.6M": 77.16, "4.8M": 76.52, "6.0M": 76.09, "12M": 75.04}
TOTAL = {"1.2M": 1.2e6, "2.4M": 2.4e6, "3.6M": 3.6e6, "4.8M": 4.8e6, "6.0M": 6.0e6, "12M": 12e6}
REAL = 1_200_000


def get_config(variant=None):
    variant = variant or "2.4M"
    if variant not in PAPER:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(PAPER)}")
    synthetic = int(TOTAL[variant]) - REAL
    c = classifier_config(cl.resnet_recipe(1024, 90, model="resnet50", num_classes=1000))
    c.workdir = f"runs/data_size_{variant}"
    c.data.update(
        mode="real" if synthetic == 0 else "mixed",
        synthetic_dir="runs/sample_9x/shards",
        synthetic_images=synthetic,
    )
    c.data.real.update(source="imagenet_tfds", data_dir="", split="train")
    c.hardware = "32 TPU-v4 chips (v4-64), batch 1024, 90 epochs"
    c.paper = dict(top1=PAPER[variant], note=f"{variant} total training images")
    return c
