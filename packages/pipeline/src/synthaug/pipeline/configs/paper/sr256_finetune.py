"""Fine-tune Imagen's 64→256 super-resolution Efficient U-Net on ImageNet-1K.

Command:
    synthaug finetune --config paper/sr256_finetune \
        --config.init_checkpoint=/ckpt/imagen_sr_256 \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.data.data_dir=/data/tfds --config.workdir=/runs/sr256

The model, diffusion, optimizer and train sections are diffusion-core's ``imagen_sr_256``
preset under its own key names (``--config.train.num_steps=...``). The learning rate is
constant after the warmup (``optimizer.end_learning_rate`` = ``learning_rate``).

Hardware: 256 TPU-v4 chips (a v4-512 slice), global batch 2048.
Paper: ≈490K steps with Adam (lr 1e-4, β 0.9/0.999, eps 1e-8, 10K warmup), noise-conditioning
augmentation on the low-resolution input during training. With the fine-tuned base, the
cascade's 256×256 samples score FID 1.76 (train) / 2.81 (val), IS 239.18±1.14.
"""

from synthaug.pipeline.configs.paper._mesh import UNET_FSDP_MESH, UNET_FSDP_RULES
from synthaug.pipeline.schemas import finetune_config


def get_config():
    c = finetune_config("imagen_sr_256")
    c.workdir = "runs/sr256_finetune"
    c.init_checkpoint = ""
    c.data.update(source="imagenet_tfds", data_dir="", split="train", per_class=0)
    c.text.update(encoder="xxl", checkpoint="", tokenizer="", max_length=128, cache="")
    c.optimizer.update(name="adam", learning_rate=1e-4, warmup_steps=10_000, b1=0.9, b2=0.999)
    c.optimizer.update(eps=1e-8, decay_steps=490_000, end_learning_rate=1e-4)  # constant
    c.train.update(num_steps=490_000, batch_size=2048, save_every=5000, log_every=100)
    c.train.ema_decay = 0.9999  # not given in the paper
    c.diffusion.p_uncond = 0.1
    c.hardware = "256 TPU-v4 chips (v4-512), batch 2048"
    # FSDP over 8 chips (`synthaug plan --config paper/sr256_finetune`).
    c.mesh.update(UNET_FSDP_MESH)
    c.sharding.rules = UNET_FSDP_RULES
    c.paper = dict(fid=1.76, note="256x256 FID 1.76 train / 2.81 val, IS 239.18")
    return c
