"""One diffusion stage of the demo cascade on the digits, on a CPU.

Variants: ``base`` (default; ``demo_base``, the v-predicting 16-channel 16×16 text-conditioned
U-Net: 1,000 steps of batch 16) and ``sr`` (``demo_sr``, the 16→32 super-resolution U-Net: 800
steps of batch 8), as in ``synthaug demo``. Prompts are the class names through the tiny
frozen T5.

Command:
    synthaug finetune --config demo/finetune:base --config.workdir=runs/digits_base \
        --config.text.cache=runs/text_cache
    synthaug finetune --config demo/finetune:sr --config.workdir=runs/digits_sr \
        --config.text.cache=runs/text_cache
"""

import ml_collections

PRESETS = {"base": "demo_base", "sr": "demo_sr"}
TRAIN = {  # steps, batch size, learning rate
    "base": (1000, 16, 4e-3),
    "sr": (800, 8, 2e-3),
}


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
    steps, batch, lr = TRAIN[variant]
    c.train = dict(
        steps=steps,
        batch_size=batch,
        optimizer="adam",
        learning_rate=lr,
        warmup_steps=steps // 20,
        decay="cosine",
        ema_decay=0.995,
        text_drop_prob=0.1,
        checkpoint_every=250,
        log_every=10,
    )
    c.hardware = "CPU (2 cores)"
    return c
