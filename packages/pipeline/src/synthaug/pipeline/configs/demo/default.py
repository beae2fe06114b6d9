"""The demo: the paper's pipeline at toy scale on the embedded digits, on a CPU.

Variants: ``full`` (default, 7 min 3 s on 2 CPU cores) and ``quick`` (the integration tests'
variant: fewer steps and images, XLA's compile-speed options; compilation dominates it; 63–99 s
on 2 CPU cores). Each run writes the wall and CPU time of every stage into its report.

The diffusion models are the v-predicting ``demo_base`` (a 16-channel 16×16 U-Net) and
``demo_sr`` (16→32). Measured with the same training and sampler code (samples scored by a
logistic regression fitted on real 16×16 digits, 96% on the real test split): ``demo_base``
after 1,000 steps of batch 16 draws digits it recognises 78% / 88% / 95% of the time at
guidance 1.0 / 1.25 / 3.0 (eps-prediction: 17–29% after 1,000 steps of batch 32). A step
takes 0.11 s on 2 CPU cores (batch 16), an SR step 0.12 s (batch 8).

Every classifier takes the same number of optimizer steps (``classifier.steps``), whatever
the size of its training set, so that (a), (b) and (c) are compared at equal compute and
share one compiled train step.

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
    if variant not in ("full", "quick"):
        raise ValueError(f"unknown variant {variant!r}; expected 'full' or 'quick'")
    c = ml_collections.ConfigDict()
    c.stage = "demo"
    c.seed = 0
    c.out = "demo_out"
    c.text = dict(encoder="tiny", checkpoint="", tokenizer="", max_length=8, seed=0, cache="")
    c.real_per_class = 10
    if variant == "full":
        c.fast_compile = False
        c.base = dict(preset="demo_base", steps=1000, batch_size=16, learning_rate=4e-3)
        c.sr = dict(preset="demo_sr", steps=800, batch_size=8, learning_rate=2e-3)
        c.sample = dict(
            per_class=20,
            shard_size=50,
            batch_size=50,
            base_steps=25,
            sr_steps=10,
            sweep_guidance=(1.0, 1.25, 3.0),
            sweep_per_class=20,
        )
        c.classifier = dict(name="resnet_tiny", steps=150, batch_size=32, learning_rate=0.8)
    else:
        c.fast_compile = True
        c.base = dict(preset="demo_base", steps=40, batch_size=16, learning_rate=4e-3)
        c.sr = dict(preset="demo_sr", steps=20, batch_size=8, learning_rate=2e-3)
        c.sample = dict(
            per_class=4,
            shard_size=20,
            batch_size=20,
            base_steps=10,
            sr_steps=5,
            sweep_guidance=(1.0, 1.25, 3.0),
            sweep_per_class=4,
        )
        c.classifier = dict(name="resnet_tiny", steps=20, batch_size=16, learning_rate=0.8)
    c.sample.base_guidance = 1.25
    c.sample.base_log_var_mix = 0.0
    c.sample.sr_guidance = 1.0
    c.sample.sr_log_var_mix = 0.1
    c.sample.sr_aug_level = 0.0
    return c
