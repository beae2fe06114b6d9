"""A class-balanced synthetic ImageNet from OpenAI's ADM: 64×64 base plus the 64→256 upsampler.

Weights (not downloaded by synthaug): ``64x64_diffusion.pt`` and ``64_256_upsampler.pt`` from
the openai/guided-diffusion release (MIT licence). Import them first:

    synthaug import-weights --from adm 64x64_diffusion.pt --out /ckpt/adm_64 --preset adm_64
    synthaug import-weights --from adm 64_256_upsampler.pt --out /ckpt/adm_sr_256 \
        --preset adm_sr_256

Command:
    synthaug sample --config paper/adm_sample \
        --config.base.checkpoint=/ckpt/adm_64 --config.sr1.checkpoint=/ckpt/adm_sr_256 \
        --config.out_dir=/data/synthetic_adm_256

Settings as the models were trained and released: class labels as the condition, no
classifier-free guidance (ADM was not trained with label dropout), the learned-range
variance, ``x0`` clipped to [-1, 1], 250 respaced DDPM steps per stage (guided-diffusion's
``--timestep_respacing 250``), the low-res image resized without noise for the upsampler. No
text encoder is loaded. 1200 images per class (1.2M at 256×256), the paper's set size.

Hardware: sized for 64 accelerators at batch 64 per host step.

Paper: not an experiment of the synthetic-data paper; Dhariwal & Nichol (2021) report FID 7.49
for this cascade (ADM-U, 256×256, no guidance) against ImageNet train statistics.
"""

import ml_collections

_STAGE = dict(
    enabled=True,
    checkpoint="",
    sampler="ddpm",
    steps=250,
    guidance=1.0,
    log_var_mix=0.0,
    aug_level=0.0,
    threshold_percentile=99.5,
)


def get_config():
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = "runs/adm_sample"
    c.out_dir = "runs/adm_sample/shards"
    c.dataset = "imagenet"
    c.classes = ()
    c.per_class = 1200
    c.shard_size = 1000
    c.batch_size = 64
    c.base = dict(_STAGE, preset="adm_64", checkpoint="runs/adm_64")
    c.sr1 = dict(_STAGE, preset="adm_sr_256", checkpoint="runs/adm_sr_256")
    c.sr2 = dict(_STAGE, enabled=False, preset="imagen_sr_1024")
    c.hardware = "64 accelerators, batch 64"
    c.paper = dict(fid=7.49, note="ADM-U 256x256 (Dhariwal & Nichol 2021), not this paper")
    return c
