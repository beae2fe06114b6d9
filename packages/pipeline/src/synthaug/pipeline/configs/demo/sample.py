"""A class-balanced synthetic digits set from the demo cascade (resumable).

The paper's sampler settings with fewer steps: base guidance 1.25, log-variance mix 0.0;
SR guidance 1.0, log-variance mix 0.1; DDPM ancestral; no noise-conditioning augmentation.
The models are read from the two ``demo/finetune`` workdirs (their ``model.json`` records
each model); the tiny T5's tokenizer is trained on the prompts into ``out_dir``.

Command:
    synthaug sample --config demo/sample --config.base.checkpoint=runs/digits_base \
        --config.sr1.checkpoint=runs/digits_sr --config.out_dir=runs/digits_synthetic
"""

from synthaug.pipeline.schemas import get_schema


def get_config():
    c = get_schema("sample")
    c.out_dir = "runs/digits_synthetic"
    c.dataset = "digits"
    c.per_class = 40
    c.shard_size = 100
    c.batch_size = 50
    c.text.update(encoder="tiny", max_length=8, seed=0, cache="")
    c.base.update(
        enabled=True,
        preset="tiny_base",
        checkpoint="runs/digits_base",
        sampler="ddpm",
        steps=25,
        guidance=1.25,
        log_var_mix=0.0,
        aug_level=0.0,
    )
    c.sr1.update(
        enabled=True,
        preset="tiny_sr",
        checkpoint="runs/digits_sr",
        sampler="ddpm",
        steps=10,
        guidance=1.0,
        log_var_mix=0.1,
        aug_level=0.0,
    )
    c.sr2.enabled = False
    c.hardware = "CPU (2 cores)"
    return c
