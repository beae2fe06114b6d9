"""The demo: the paper's pipeline at toy scale on the embedded digits, on a CPU.

Variants: ``full`` (default) and ``quick`` (the integration tests' variant: fewer steps
and images; compilation dominates it). Both compile the diffusion models with XLA's
compile-speed options (``fast_compile``: a fifth of the compile time, about the same step
time for these U-Nets) and the classifiers at the default optimisation level. Budgets on 2 unloaded
CPU cores: full at most 10 minutes, quick at most 2; each run writes the wall and CPU time of
every stage into its report.

The diffusion models are v-predicting: ``tiny_base`` widened to 16 channels (16×16) and
``tiny_sr`` (16→32). Measured with the same training and sampler code (samples scored by a
logistic regression fitted on real 16×16 digits, 96% on the real test split): the base
after 1,000 steps of batch 16 draws digits it recognises 78% / 88% / 95% of the time at
guidance 1.0 / 1.25 / 3.0 (eps-prediction: 17–29% after 1,000 steps of batch 32).

Every classifier row is trained with ``seeds`` seeds (``seed``, ``seed + 1``, ...; seed i
draws the real subset, the initialisation and the data order), reported as mean ± sd, and
the paired difference (c) − (a) with its 95% t-interval. The classifiers' synthetic set is
the base model's 16×16 samples (no SR sampling noise); the SR stage's 32×32 samples are a
smaller set for the figures and a CAS after SR. The classifiers see 8×8 images (the
digits' own resolution; every image is resized by block means): a step costs a sixteenth
of one at 32×32. The real subset is ``real_per_class`` = 2 images per class, while the
diffusion models train on the whole train split (1,437 images): the setting in which
synthetic data can add what the small subset lacks (5 per class already reach about 90%).
``size_sweep`` adds 0.5x ... 8x the real subset's size in synthetic images; ``sweep`` is
the base guidance sweep (five weights, CAS over ``sweep.seeds`` seeds, base samples).

The quick variant's generator (40 base steps) draws no recognisable digits: its synthetic
rows and sweeps exercise the pipeline, not the paper's claims; the full variant's base
(1,200 steps) does (see the README for measured numbers).

Every classifier takes the same number of optimizer steps
(``classifier.recipe.total_steps``), whatever the size of its training set, so that all
rows are compared at equal compute and share one compiled program (the whole training run
is one ``lax.scan``, compiled at XLA's default optimisation level even when
``fast_compile`` lowers it for the diffusion models).

The stages are the other demo configs, whole: ``base`` and ``sr`` are ``demo/finetune:base``
and ``:sr``, ``sample`` is ``demo/sample``, ``classifier`` is ``demo/classifier``
(override their keys as ``--config.base.train.num_steps=500``,
``--config.sample.base.guidance=3.0``, ``--config.classifier.recipe.base_lr=0.4``). The demo
puts their workdirs under ``out``, gives them its ``seed`` and ``text``, passes the trained
models on in memory, and trains each classifier for ``classifier.recipe.total_steps`` steps.

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

from synthaug.pipeline.configs.demo import classifier, finetune, sample


def get_config(variant=None):
    variant = variant or "full"
    if variant not in ("full", "quick"):
        raise ValueError(f"unknown variant {variant!r}; expected 'full' or 'quick'")
    quick = variant == "quick"
    c = ml_collections.ConfigDict()
    c.stage = "demo"
    c.seed = 0
    c.out = "demo_out"
    c.overwrite = False
    c.fast_compile = True
    c.text = dict(encoder="tiny", checkpoint="", tokenizer="", max_length=8, seed=0, cache="")
    # Few real images per class, so that synthetic data can matter (5 per class already
    # give about 90%).
    c.real_per_class = 2
    c.seeds = 3 if quick else 5
    c.size_sweep = (0.5, 1.0, 2.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0)
    c.base = finetune.get_config("base")
    c.sr = finetune.get_config("sr")
    for stage, steps in ((c.base, 40 if quick else 1200), (c.sr, 20 if quick else 400)):
        stage.optimizer.update(warmup_steps=max(1, steps // 20), decay_steps=steps)
        stage.train.update(num_steps=steps, ema_decay=0.995 if steps >= 400 else 0.98)
        stage.train.update(save_every=steps, log_every=max(1, steps // 50))
    c.sample = sample.get_config()
    # The demo samples max(per_class, real_per_class * max(size_sweep)) images per class.
    c.sample.update(per_class=4 if quick else 40, shard_size=20 if quick else 50)
    c.sample.batch_size = 20 if quick else 50
    c.sample.base.steps = 10 if quick else 25
    c.sample.sr1.steps = 5 if quick else 10
    c.classifier = classifier.get_config("real")
    # Every classifier takes `total_steps` optimizer steps of `batch_size` (its training set
    # is passed over as many times as that needs): one epoch of the repeated set, so that
    # every classifier has the same schedule and shares one compiled program. It sees 8×8
    # images (the digits' own resolution). Quick: 60 steps reach about 90% on all real
    # train digits (20 steps: 10-30%, too few for the integration test's margin above chance).
    c.classifier.recipe.update(epochs=1, total_steps=60 if quick else 80, image_size=8)
    c.classifier.recipe.update(batch_size=16 if quick else 32, base_lr=0.8, warmup_epochs=0.1)
    # One checkpoint per classifier, at its end: the demo trains dozens of them.
    c.classifier.recipe.checkpoint_every_steps = c.classifier.recipe.total_steps
    c.sweep = dict(
        guidance=(1.0, 1.25, 1.5, 2.0, 3.0), per_class=4 if quick else 10, seeds=2 if quick else 5
    )
    return c
