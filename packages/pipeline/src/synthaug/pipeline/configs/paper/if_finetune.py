"""Fine-tune DeepFloyd IF-I-XL's 64×64 base on ImageNet-1K, prompting with the class name.

The paper's method on the only public Imagen-like cascade: IF-I (T5-XXL text, 64×64) is
fine-tuned on ImageNet with the class names as prompts and 10% prompt dropout, then sampled
with classifier-free guidance against the empty prompt (IF's own null condition).

Weights (not downloaded by synthaug): ``DeepFloyd/IF-I-XL-v1.0`` from Hugging Face (accept
its licence there), its ``unet/`` directory; T5 v1.1 XXL (``google/t5-v1_1-xxl``) for the
text. Import the U-Net first:

    synthaug import-weights --from deepfloyd-if /ckpt/IF-I-XL-v1.0/unet \
        --out /ckpt/if_i_xl --preset if_i_xl

Command:
    synthaug finetune --config paper/if_finetune --config.init_checkpoint=/ckpt/if_i_xl \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.data.data_dir=/data/tfds --config.workdir=/runs/if_i_xl_imagenet

Loading ``init_checkpoint`` is strict: every parameter comes from it. Text is padded to IF's
77 tokens (its training length); IF attends to every token, padding included. The loss is
the eps MSE on IF's discrete cosine schedule (s = 0.008); the learned-range variance channels
keep their pretrained values. This config covers the base; ``paper/if_sample`` samples the
fine-tuned base with IF-II-L (``if_ii_l``) as the 64->256 stage. IF-I-M (400M, the smaller
base) has no preset: its published config could not be checked against a reference.

Hardware: sized for 64 TPU-v5p chips (95 GiB each), batch 512 (8 per chip), bfloat16 compute,
FSDP over 8 chips and 4 micro-batches per step: 40.3 GiB per chip in ``synthaug plan``. The
4.3B model does not fit a 32 GiB TPU-v4 chip: gathering its float32 weights and their bfloat16
copies alone takes about 26 GiB.

Paper: not an experiment of the synthetic-data paper; the pretrained IF cascade reports a
zero-shot COCO FID of 6.66 (DeepFloyd's model card), the reference before fine-tuning.
"""

from synthaug.pipeline.configs.paper._mesh import UNET_FSDP_RULES
from synthaug.pipeline.schemas import finetune_config


def get_config():
    c = finetune_config("if_i_xl")
    c.workdir = "runs/if_i_xl_imagenet"
    c.init_checkpoint = ""
    c.data.update(source="imagenet_tfds", data_dir="", split="train", per_class=0)
    c.text.update(encoder="xxl", checkpoint="", tokenizer="", max_length=77, cache="")
    c.model.update(dtype="bfloat16", param_dtype="float32", remat=True)
    c.optimizer.update(name="adam", learning_rate=1e-5, warmup_steps=1000)
    c.optimizer.decay_steps = 50_000
    c.train.update(num_steps=50_000, batch_size=512, save_every=2500, log_every=100)
    c.train.ema_decay = 0.9999
    c.diffusion.p_uncond = 0.1
    c.hardware = "64 TPU-v5p chips, batch 512"
    # FSDP over 8 chips and 4 micro-batches per step (`synthaug plan --config paper/if_finetune`).
    c.mesh.update({"data": -1, "fsdp": 8, "model": 1})
    c.sharding.rules = UNET_FSDP_RULES
    c.train.grad_accum_steps = 4
    c.paper = dict(fid=6.66, note="IF zero-shot COCO FID before fine-tuning, not this paper")
    return c
