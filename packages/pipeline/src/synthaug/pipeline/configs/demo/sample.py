"""A class-balanced synthetic digits set from the demo cascade (resumable).

The paper's sampler settings with fewer steps: base guidance 1.25, log-variance mix 0.0;
SR guidance 1.0, log-variance mix 0.1; DDPM ancestral; no noise-conditioning augmentation.

Command:
    synthaug sample --config demo/sample --config.base.checkpoint=runs/digits_base \
        --config.sr1.checkpoint=runs/digits_sr --config.text.cache=runs/text_cache \
        --config.out_dir=runs/digits_synthetic
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.out_dir = "runs/digits_synthetic"
    c.dataset = "digits"
    c.per_class = 40
    c.shard_size = 100
    c.batch_size = 50
    c.text = dict(encoder="tiny", max_length=8, seed=0, cache="runs/text_cache")
    c.base = dict(
        enabled=True,
        preset="demo_base",
        checkpoint="runs/digits_base",
        sampler="ddpm",
        steps=25,
        guidance=1.25,
        log_var_mix=0.0,
        aug_level=0.0,
    )
    c.sr1 = dict(
        enabled=True,
        preset="demo_sr",
        checkpoint="runs/digits_sr",
        sampler="ddpm",
        steps=10,
        guidance=1.0,
        log_var_mix=0.1,
        aug_level=0.0,
    )
    c.sr2 = dict(enabled=False)
    c.hardware = "CPU (2 cores)"
    return c
