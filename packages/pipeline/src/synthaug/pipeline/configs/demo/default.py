"""The demo: the paper's pipeline at toy scale on the embedded digits, on a CPU.

Variants: ``full`` (default), ``quick`` (the integration tests' variant: fewer steps and
images, XLA compiled at backend optimisation level 0; compilation dominates it) and ``long``
(the variant whose samples are recognisable digits: a 16-channel base U-Net, ``demo_base``,
trained 3,000 steps and the SR model 800 steps at batch 32). Each run writes the wall and CPU
time of every stage into its report.

Measured (the same training and sampler code on a GPU, samples scored by a logistic
regression fitted on real 16×16 digits, which scores 93% on the real test split): the 8-channel
``tiny_base`` of ``full`` scores 12–14% (chance; grey blobs) after 600 steps and 20–25% after
2,000; ``demo_base`` scores 74% at guidance 1.25 and 95% at guidance 3.0 after 3,000 steps of
batch 32. The SR model after 300 steps of batch 16 keeps 56% of real low-resolution test digits
recognisable, after 800 steps of batch 32 85%. On 2 CPU cores a ``demo_base`` step of batch
32 takes about 0.9 s (``tiny_base``: 0.25 s), so ``long`` needs about an hour there.

Command:
    synthaug demo --out demo_out            # or: nox -s demo
    synthaug demo --out demo_out --quick

A tiny 16×16 text-conditioned base U-Net and a tiny 16→32 SR U-Net are trained on the digits
(prompts are the class names through a tiny, randomly initialised, frozen T5 encoder); a
class-balanced synthetic set is sampled with the paper's sampler settings scaled down (base
guidance 1.25, log-variance mix 0.0; SR guidance 1.0, log-variance mix 0.1; DDPM ancestral);
a small classifier is trained on a small real subset, on synthetic data only (CAS) and on
both, and evaluated on the held-out real test split.
"""

import ml_collections


def get_config(variant=None):
    variant = variant or "full"
    if variant not in ("full", "quick", "long"):
        raise ValueError(f"unknown variant {variant!r}; expected 'full', 'quick' or 'long'")
    c = ml_collections.ConfigDict()
    c.stage = "demo"
    c.seed = 0
    c.out = "demo_out"
    c.text = dict(encoder="tiny", checkpoint="", tokenizer="", max_length=8, seed=0, cache="")
    if variant in ("full", "long"):
        c.fast_compile = False
        c.real_per_class = 10
        c.base = dict(preset="tiny_base", steps=600, batch_size=32, learning_rate=2e-3)
        c.sr = dict(preset="tiny_sr", steps=300, batch_size=16, learning_rate=2e-3)
        c.sample = dict(
            per_class=20,
            shard_size=50,
            batch_size=50,
            base_steps=50,
            sr_steps=25,
            sweep_guidance=(1.0, 1.25, 3.0),
            sweep_per_class=20,
        )
        c.classifier = dict(name="resnet_tiny", epochs=10, batch_size=32, learning_rate=0.05)
        if variant == "long":  # the full demo with the 16-channel base and longer training
            c.base = dict(preset="demo_base", steps=3000, batch_size=32, learning_rate=2e-3)
            c.sr = dict(preset="demo_sr", steps=800, batch_size=32, learning_rate=2e-3)
    else:
        c.fast_compile = True
        c.real_per_class = 10
        c.base = dict(preset="tiny_base", steps=100, batch_size=16, learning_rate=2e-3)
        c.sr = dict(preset="tiny_sr", steps=50, batch_size=16, learning_rate=2e-3)
        c.sample = dict(
            per_class=6,
            shard_size=20,
            batch_size=20,
            base_steps=20,
            sr_steps=10,
            sweep_guidance=(1.0, 1.25, 3.0),
            sweep_per_class=6,
        )
        c.classifier = dict(name="resnet_tiny", epochs=3, batch_size=16, learning_rate=0.05)
    c.sample.base_guidance = 1.25
    c.sample.base_log_var_mix = 0.0
    c.sample.sr_guidance = 1.0
    c.sample.sr_log_var_mix = 0.1
    c.sample.sr_aug_level = 0.0
    return c
