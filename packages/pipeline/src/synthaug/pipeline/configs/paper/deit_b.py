"""DeiT-B on real and real + 1.2M synthetic ImageNet.

Variants: ``real`` (paper 81.79 top-1), ``mixed`` (paper 82.84 top-1).

Command:
    synthaug train-classifier --config paper/deit_b:mixed \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_256/shards

Hardware: sized for 64 TPU-v4 chips (v4-128), batch 1024, 300 epochs.
Recipe: ``synthaug.classifiers.deit_recipe`` (DeiT, Touvron et al. 2021) under ``recipe``:
AdamW, lr 5e-4 × batch/512, weight decay 0.05, 5-epoch warmup, cosine, label smoothing 0.1,
mixup 0.8, cutmix 1.0, RandAugment (m9, std 0.5), 224×224.
Paper top-1: DeiT-B 81.79 → 82.84 (real → real + generated).
"""

from synthaug import classifiers as cl
from synthaug.pipeline.configs.paper._transformer import transformer_config

PAPER = {"real": 81.79, "mixed": 82.84}


def get_config(variant=None):
    return transformer_config(
        variant,
        key="deit_b",
        recipe=cl.deit_recipe(1024, 300, model="deit_base_patch16_224", num_classes=1000),
        paper=PAPER,
        note="DeiT-B 81.79 -> 82.84",
        hardware="64 TPU-v4 chips (v4-128), batch 1024, 300 epochs",
    )
