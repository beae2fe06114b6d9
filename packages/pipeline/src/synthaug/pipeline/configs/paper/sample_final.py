"""The paper's final sampling settings: a class-balanced synthetic ImageNet.

Variants (``--config paper/sample_final:VARIANT``):
    256      (default) base 64×64 + SR 64→256; 1.2M images (1200 per class).
    64       the base alone, 50K images (50 per class) for the 64×64 FID.
    1024     adds the frozen SR 256→1024 (DDIM, 32 steps; unverified settings).
    Nx       N×1.2M images at 256×256 for the data-size sweep, N in {1, 2, 3, 4, 9}
             (2x = 2.4M generated; with 1.2M real that is 3.6M total).

Command:
    synthaug sample --config paper/sample_final:256 \
        --config.base.checkpoint=/runs/base64_finetune/checkpoints \
        --config.sr1.checkpoint=/runs/sr256_finetune/checkpoints \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.out_dir=/data/synthetic_256
    (on a multi-host pod every host runs the same command; shards are split by process index,
    and a killed run resumes at the first unfinished shard)

Hardware: sized for a TPU-v4 pod slice of 64 chips at batch 64 per host step.

Settings (PAPER.md, "Sampling settings"): base guidance 1.25, log-variance mix 0.0, DDPM
ancestral, 1000 steps; SR 64→256 guidance 1.0, log-variance mix 0.1, DDPM, 1000 steps; no
noise-conditioning augmentation at sampling time. Paper result: FID 1.76 (train) / 2.81
(val), IS 239.18 at 256×256; CAS 64.96 / 85.66 (256) and 69.24 / 88.10 (1024).
"""

import ml_collections

from synthaug.pipeline.configs.paper._sampling import FINAL_BASE, FINAL_SR256, FINAL_SR1024, TEXT

_MULTIPLES = {"1x": 1, "2x": 2, "3x": 3, "4x": 4, "9x": 9}


def get_config(variant=None):
    variant = variant or "256"
    if variant not in ("64", "256", "1024", *_MULTIPLES):
        raise ValueError(f"unknown variant {variant!r}; expected 64, 256, 1024 or Nx")
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = f"runs/sample_{variant}"
    c.out_dir = f"runs/sample_{variant}/shards"
    c.dataset = "imagenet"
    c.classes = ()
    c.per_class = 50 if variant == "64" else 1200 * _MULTIPLES.get(variant, 1)
    c.shard_size = 1000
    c.batch_size = 64
    c.text = dict(TEXT)
    c.base = dict(FINAL_BASE)
    c.sr1 = dict(FINAL_SR256, enabled=variant != "64")
    c.sr2 = dict(FINAL_SR1024, enabled=variant == "1024")
    c.hardware = "TPU-v4 pod slice, 64 chips, batch 64 per host step"
    if variant == "64":
        c.paper = dict(fid=1.21, inception_score=85.77, note="64x64 FID 1.21 train / 2.51 val")
    elif variant == "1024":
        c.paper = dict(note="CAS 69.24 / 88.10 (ResNet-50 on 1024x1024 samples, resized)")
    else:
        c.paper = dict(fid=1.76, inception_score=239.18, note="FID 1.76 train / 2.81 val")
    return c
