"""DeiT-S on real and real + 1.2M synthetic ImageNet.

Variants: ``real`` (paper 78.97 top-1), ``mixed`` (paper 80.49 top-1).

Command:
    synthaug train-classifier --config paper/deit_s:mixed \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_256/shards

Hardware: sized for 16 TPU-v4 chips (v4-32), batch 1024, 300 epochs.
Recipe: ``synthaug.classifiers.deit_recipe`` (DeiT, Touvron et al. 2021) under ``recipe``:
AdamW, lr 5e-4 × batch/512, weight decay 0.05, 5-epoch warmup, cosine, label smoothing 0.1,
mixup 0.8, cutmix 1.0, RandAugment (m9, std 0.5), 224×224.
Paper top-1: DeiT-S 78.97 → 80.49 (real → real + generated).
"""

from synthaug import classifiers as cl
from synthaug.pipeline.configs.paper._transformer import transformer_config

PAPER = {"real": 78.97, "mixed": 80.49}


def get_config(variant=None):
    return transformer_config(
        variant,
        key="deit_s",
        recipe=cl.deit_recipe(1024, 300, model="deit_small_patch16_224", num_classes=1000),
        paper=PAPER,
        note="DeiT-S 78.97 -> 80.49",
        hardware="16 TPU-v4 chips (v4-32), batch 1024, 300 epochs",
    )
