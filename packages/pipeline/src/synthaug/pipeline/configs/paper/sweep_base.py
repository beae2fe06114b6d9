"""The base-model sampler sweep: guidance × log-variance mix × steps (10K samples each).

Grid (PAPER.md): guidance w ∈ {1.0, 1.25, 1.5, 1.75, 2.0, 5.0} × log-variance mix
v ∈ {0, 0.2, 0.3, 0.4, 1.0} × steps ∈ {128, 500, 1000}; the best, w = 1.25, v = 0.0,
1000 steps, is what paper/sample_final uses. A variant names one point:
``paper/sweep_base:w1.25_v0.0_s1000`` (default). The SR stage is run at its final settings.

Command: (one grid point; then ``synthaug evaluate --config paper/evaluate:val64`` on it)
    for w in 1.0 1.25 1.5 1.75 2.0 5.0; do for v in 0.0 0.2 0.3 0.4 1.0; do
      synthaug sample --config paper/sweep_base:w${w}_v${v}_s1000 \
        --config.base.checkpoint=/runs/base64_finetune/checkpoints \
        --config.sr1.checkpoint=/runs/sr256_finetune/checkpoints \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm
    done; done

Hardware: a TPU-v4 slice of 64 chips; 10K samples per point (10 per class).
Paper: at w = 1.25 the 64×64 samples give FID 1.21 (train); the CAS of 64×64 samples at
w = 1.25 is ≈33 / ≈57 (top-1 / top-5, read from a plot).
"""

import ml_collections

from synthaug.pipeline.configs.paper._sampling import FINAL_BASE, FINAL_SR256, TEXT

GUIDANCE = (1.0, 1.25, 1.5, 1.75, 2.0, 5.0)
LOG_VAR = (0.0, 0.2, 0.3, 0.4, 1.0)
STEPS = (128, 500, 1000)


def variants():
    """Every grid point's variant name."""
    return [f"w{w}_v{v}_s{s}" for w in GUIDANCE for v in LOG_VAR for s in STEPS]


def get_config(variant=None):
    variant = variant or "w1.25_v0.0_s1000"
    if variant not in variants():
        raise ValueError(f"unknown variant {variant!r}; expected w<w>_v<v>_s<steps> on the grid")
    w, v, s = variant.split("_")
    w, v, s = float(w[1:]), float(v[1:]), int(s[1:])
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = f"runs/sweep_base/{variant}"
    c.out_dir = f"runs/sweep_base/{variant}/shards"
    c.dataset = "imagenet"
    c.per_class = 10
    c.shard_size = 1000
    c.batch_size = 64
    c.text = dict(TEXT)
    c.base = dict(FINAL_BASE, steps=s, guidance=w, log_var_mix=v)
    c.sr1 = dict(FINAL_SR256)
    c.sr2 = dict(enabled=False)
    c.hardware = "TPU-v4 slice, 64 chips; 10K samples per grid point"
    c.paper = dict(fid=1.21, note="best point w=1.25 v=0.0 1000 steps: 64x64 FID 1.21 (train)")
    return c
