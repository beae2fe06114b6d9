"""ViT-S/16 on real and real + 1.2M synthetic ImageNet.

Variants: ``real`` (paper 79.89 top-1), ``mixed`` (paper 81.00 top-1).

Command:
    synthaug train-classifier --config paper/vit_s16:mixed \
        --config.data.real.data_dir=/data/tfds --config.data.synthetic_dir=/runs/sample_256/shards

Hardware: sized for 32 TPU-v4 chips (v4-64), batch 1024, 300 epochs.
Recipe (the paper's appendix was not recovered): big_vision's ImageNet ViT-S/16,
``big_vision/configs/vit_s16_i1k.py`` ("better plain ViT baselines", ≈80.0 top-1 after 300
epochs), as ``synthaug.classifiers.vit_recipe``: Adam lr 1e-3 with bfloat16 first moment,
decoupled weight decay 1e-4 scaled by the schedule, 10K-step warmup, cosine, clipping 1.0,
Inception crop + flip, RandAugment(2, 10), big_vision mixup 0.2, global-average-pool head
with a tanh pre-logits layer, 224×224.
"""

from synthaug import classifiers as cl
from synthaug.pipeline.configs.paper._transformer import transformer_config

PAPER = {"real": 79.89, "mixed": 81.00}


def get_config(variant=None):
    return transformer_config(
        variant,
        key="vit_s16",
        recipe=cl.vit_recipe(1024, 300, model="vit_s16_224", num_classes=1000),
        paper=PAPER,
        note="ViT-S/16 79.89 -> 81.00",
        hardware="32 TPU-v4 chips (v4-64), batch 1024, 300 epochs",
    )
