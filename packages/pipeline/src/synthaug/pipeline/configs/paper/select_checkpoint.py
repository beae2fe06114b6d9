"""Pick a fine-tuned checkpoint by FID on 10K samples against ImageNet val, as the paper did.

Variants:
    base64 (default)  ranks the kept checkpoints of the 64×64 base fine-tune: 10K samples at
                      64×64 (final sampler settings) against ImageNet val 64×64 statistics.
    sr256             ranks the 64→256 SR fine-tune: the chosen base fixed, 10K samples at
                      256×256 against ImageNet val 256×256 statistics.
Paper: the selected cascade scores FID 2.51 (64×64, val) and 2.81 (256×256, val).

Command:
    synthaug select-checkpoint --config paper/select_checkpoint:base64 \
        --config.base.checkpoint=/runs/base64_finetune \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.select.reference=/stats/imagenet_val_64.npz \
        --config.select.inception_checkpoint=/ckpt/pt_inception-2015-12-05-6726825d.pth
    # -> /runs/base64_finetune/checkpoint_selection.json: ranking, best_step; then
    synthaug sample --config paper/sample_final:256 --config.base.checkpoint_step=BEST_STEP ...

Hardware: sized for a TPU-v4 pod slice of 64 chips (10K samples of 1000 DDPM steps per kept
checkpoint); the finetune config's `train.keep` sets how many checkpoints are ranked.
"""

import ml_collections

from synthaug.pipeline.configs.paper._sampling import FINAL_BASE, FINAL_SR256, TEXT

VARIANTS = {"base64": ("base", 2.51), "sr256": ("sr1", 2.81)}


def get_config(variant=None):
    variant = variant or "base64"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    stage, fid = VARIANTS[variant]
    c = ml_collections.ConfigDict()
    c.stage = "select-checkpoint"
    c.seed = 0
    c.dataset = "imagenet"
    c.classes = ()
    c.batch_size = 64
    c.text = dict(TEXT)
    c.base = dict(FINAL_BASE, checkpoint="runs/base64_finetune")
    c.sr1 = dict(FINAL_SR256, enabled=stage == "sr1", checkpoint="runs/sr256_finetune")
    c.sr2 = dict(enabled=False)
    size = "64" if stage == "base" else "256"
    c.select = dict(
        stage=stage,
        num_samples=10_000,
        reference=f"stats/imagenet_val_{size}.npz",
        inception_checkpoint="",
    )
    c.hardware = "TPU-v4 pod slice, 64 chips"
    c.paper = dict(fid=fid, note=f"FID of the selected cascade against val at {size}x{size}")
    return c
