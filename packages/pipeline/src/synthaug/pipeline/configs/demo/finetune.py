"""One diffusion stage of the demo cascade on the digits, on a CPU.

Variants: ``base`` (default; the tiny 16×16 text-conditioned U-Net) and ``sr`` (the tiny
16→32 super-resolution U-Net). Prompts are the class names through the tiny frozen T5.

Command:
    synthaug finetune --config demo/finetune:base --config.workdir=runs/digits_base \
        --config.text.cache=runs/text_cache
    synthaug finetune --config demo/finetune:sr --config.workdir=runs/digits_sr \
        --config.text.cache=runs/text_cache
"""

import ml_collections

PRESETS = {"base": "tiny_base", "sr": "tiny_sr"}


def get_config(variant=None):
    variant = variant or "base"
    if variant not in PRESETS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(PRESETS)}")
    c = ml_collections.ConfigDict()
    c.stage = "finetune"
    c.workdir = f"runs/digits_{variant}"
    c.model = dict(preset=PRESETS[variant], init_checkpoint="")
    c.data = dict(source="digits", split="train")
    c.text = dict(encoder="tiny", max_length=8, seed=0, cache="runs/text_cache")
    c.train = dict(
        steps=1000,
        batch_size=32,
        optimizer="adam",
        learning_rate=2e-3,
        warmup_steps=50,
        decay="cosine",
        ema_decay=0.995,
        text_drop_prob=0.1,
        checkpoint_every=250,
        log_every=10,
    )
    c.hardware = "CPU (2 cores)"
    return c
