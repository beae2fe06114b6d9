"""Fine-tune Imagen's 64×64 base U-Net on ImageNet-1K, prompting with the class name.

Command:
    synthaug finetune --config paper/base64_finetune \
        --config.model.init_checkpoint=/ckpt/imagen_base_64 \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.data.data_dir=/data/tfds --config.workdir=/runs/base64

Hardware: 256 TPU-v4 chips (a v4-512 slice), global batch 2048 (8 per chip).
Paper: ≈210K steps with Adafactor; the checkpoint is picked by FID on 10K samples against
ImageNet val. The resulting cascade's 64×64 samples score FID 1.21 (train) / 2.51 (val),
IS 85.77 (PAPER.md, results tables).
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.stage = "finetune"
    c.seed = 0
    c.workdir = "runs/base64_finetune"
    c.model = dict(preset="imagen_base_64", init_checkpoint="")
    c.data = dict(source="imagenet_tfds", data_dir="", split="train", per_class=0)
    c.text = dict(encoder="xxl", checkpoint="", tokenizer="", max_length=128, cache="")
    c.train = dict(
        steps=210_000,
        batch_size=2048,
        optimizer="adafactor",
        learning_rate=1e-4,
        warmup_steps=10_000,
        decay="cosine",
        ema_decay=0.9999,  # not given in the paper
        text_drop_prob=0.1,
        checkpoint_every=5000,
        log_every=100,
    )
    c.hardware = "256 TPU-v4 chips (v4-512), batch 2048"
    c.paper = dict(fid=1.21, note="64x64 FID 1.21 train / 2.51 val, IS 85.77")
    return c
