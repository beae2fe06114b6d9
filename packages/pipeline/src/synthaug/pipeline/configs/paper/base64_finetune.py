"""Fine-tune Imagen's 64×64 base U-Net on ImageNet-1K, prompting with the class name.

Command:
    synthaug finetune --config paper/base64_finetune \
        --config.init_checkpoint=/ckpt/imagen_base_64 \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.data.data_dir=/data/tfds --config.workdir=/runs/base64

The model, diffusion, optimizer and train sections are diffusion-core's ``imagen_base_64``
preset (``synthaug.diffusion_core.get_preset``) under its own key names: override them as
``--config.train.num_steps=...``, ``--config.optimizer.learning_rate=...``,
``--config.diffusion.p_uncond=...``.

Hardware: 256 TPU-v4 chips (a v4-512 slice), global batch 2048 (8 per chip).
Paper: ≈210K steps with Adafactor; the checkpoint is picked by FID on 10K samples against
ImageNet val. The resulting cascade's 64×64 samples score FID 1.21 (train) / 2.51 (val),
IS 85.77 (PAPER.md, results tables).
"""

from synthaug.pipeline.configs.paper._mesh import UNET_FSDP_MESH, UNET_FSDP_RULES
from synthaug.pipeline.schemas import finetune_config


def get_config():
    c = finetune_config("imagen_base_64")
    c.workdir = "runs/base64_finetune"
    c.init_checkpoint = ""
    c.data.update(source="imagenet_tfds", data_dir="", split="train", per_class=0)
    c.text.update(encoder="xxl", checkpoint="", tokenizer="", max_length=128, cache="")
    c.optimizer.update(name="adafactor", learning_rate=1e-4, warmup_steps=10_000)
    c.optimizer.decay_steps = 210_000  # cosine decay over the whole run
    c.train.update(num_steps=210_000, batch_size=2048, save_every=5000, log_every=100)
    c.train.ema_decay = 0.9999  # not given in the paper
    c.diffusion.p_uncond = 0.1  # text dropped for classifier-free guidance
    c.hardware = "256 TPU-v4 chips (v4-512), batch 2048"
    # FSDP over 8 chips and 2 micro-batches of 4 images per chip: 31.7 of 32 GiB per chip in
    # `synthaug plan --config paper/base64_finetune` (34.6 GiB in one batch of 8).
    c.mesh.update(UNET_FSDP_MESH)
    c.sharding.rules = UNET_FSDP_RULES
    c.train.grad_accum_steps = 2
    c.paper = dict(fid=1.21, note="64x64 FID 1.21 train / 2.51 val, IS 85.77")
    return c
