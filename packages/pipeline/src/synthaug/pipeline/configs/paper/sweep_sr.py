"""The SR 64→256 sampler sweep: guidance × log-variance mix × noise-augmentation level.

Grid (PAPER.md): guidance w ∈ {1, 2, 5, 10, 30} × log-variance mix v ∈ {0.1, 0.3} × aug
level ∈ {0.0, 0.1, 0.2, 0.3, 0.4}; the base runs at its final settings (w 1.25, v 0.0). A
variant names one point, ``paper/sweep_sr:w1.0_v0.1_a0.0`` (default, the final setting: aug
level 0 scored best).

Command:
    synthaug sample --config paper/sweep_sr:w2.0_v0.3_a0.1 \
        --config.base.checkpoint=/runs/base64_finetune/checkpoints \
        --config.sr1.checkpoint=/runs/sr256_finetune/checkpoints \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm

Hardware: a TPU-v4 slice of 64 chips; 10K samples per point.
Paper: the final point (w 1.0, v 0.1, aug 0) gives FID 1.76 (train) / 2.81 (val), IS 239.18
at 256×256.
"""

import ml_collections

from synthaug.pipeline.configs.paper._sampling import FINAL_BASE, FINAL_SR256, TEXT

GUIDANCE = (1.0, 2.0, 5.0, 10.0, 30.0)
LOG_VAR = (0.1, 0.3)
AUG = (0.0, 0.1, 0.2, 0.3, 0.4)


def variants():
    """Every grid point's variant name."""
    return [f"w{w}_v{v}_a{a}" for w in GUIDANCE for v in LOG_VAR for a in AUG]


def get_config(variant=None):
    variant = variant or "w1.0_v0.1_a0.0"
    if variant not in variants():
        raise ValueError(f"unknown variant {variant!r}; expected w<w>_v<v>_a<aug> on the grid")
    w, v, a = (float(p[1:]) for p in variant.split("_"))
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = f"runs/sweep_sr/{variant}"
    c.out_dir = f"runs/sweep_sr/{variant}/shards"
    c.dataset = "imagenet"
    c.per_class = 10
    c.text = dict(TEXT)
    c.base = dict(FINAL_BASE)
    c.sr1 = dict(FINAL_SR256, guidance=w, log_var_mix=v, aug_level=a)
    c.sr2 = dict(enabled=False)
    c.hardware = "TPU-v4 slice, 64 chips; 10K samples per grid point"
    c.paper = dict(fid=1.76, inception_score=239.18, note="final point: FID 1.76 / 2.81 (val)")
    return c
