"""Rank the kept checkpoints of the demo base model by FID of its samples (toy scale).

Command:
    synthaug finetune --config demo/finetune:base --config.workdir=runs/digits_base \
        --config.train.keep=3
    synthaug select-checkpoint --config demo/select_checkpoint \
        --config.base.checkpoint=runs/digits_base \
        --config.select.reference=runs/digits_stats.npz \
        --config.select.inception_checkpoint=/ckpt/pt_inception-2015-12-05-6726825d.pth
"""

from synthaug.pipeline.schemas import get_schema


def get_config():
    c = get_schema("select-checkpoint")
    c.dataset = "digits"
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
    c.sr1.enabled = False
    c.sr2.enabled = False
    c.select.update(stage="base", num_samples=200)
    c.hardware = "CPU (2 cores)"
    return c
