"""A class-balanced synthetic ImageNet from DeepFloyd IF: IF-I-XL 64×64 plus IF-II-L 64→256.

The paper's sampling method on the only public Imagen-like cascade: each class is prompted
with its class name through T5 v1.1 XXL, and both stages use classifier-free guidance against
the empty prompt's T5 embedding (IF's own null condition, computed by ``sample`` from the
same encoder); IF-II sees the base image upsampled (align corners) and then noised at the
integer step ``round(sr1.aug_level * 1000)`` = 250 (its training order: ``if_ii_l``'s
``diffusion.aug_order = "resize_then_noise"``, diffusion-core's ``condition_lowres``, the
function ``finetune`` trains an IF-II stage with). Run it on the released weights, or on a fine-tuned base
(``paper/if_finetune``) by pointing ``base.checkpoint`` at that run's checkpoints.

Weights (not downloaded by synthaug): ``DeepFloyd/IF-I-XL-v1.0`` and ``DeepFloyd/IF-II-L-v1.0``
from Hugging Face (accept their licence there), their ``unet/`` directories; T5 v1.1 XXL
(``google/t5-v1_1-xxl``) for the text. Import the U-Nets first:

    synthaug import-weights --from deepfloyd-if /ckpt/IF-I-XL-v1.0/unet \
        --out /ckpt/if_i_xl --preset if_i_xl
    synthaug import-weights --from deepfloyd-if /ckpt/IF-II-L-v1.0/unet \
        --out /ckpt/if_ii_l --preset if_ii_l

Command:
    synthaug sample --config paper/if_sample \
        --config.base.checkpoint=/ckpt/if_i_xl --config.sr1.checkpoint=/ckpt/if_ii_l \
        --config.text.checkpoint=/ckpt/t5_v1_1_xxl --config.text.tokenizer=/ckpt/t5.spm \
        --config.out_dir=/data/synthetic_if_256

Settings: IF's released sampling defaults (deepfloyd_if ``IFStageI`` / ``IFStageII``):
guidance 7.0 (base) and 4.0 (SR), dynamic thresholding at the 95th percentile, the
learned-range variance, 150 respaced DDPM steps for the base; 50 uniformly respaced steps for
the SR stage (IF's own "smart50" spacing is not reproduced); text padded to IF's 77 tokens.
IF-II-M (450M) has no preset (its published config could not be checked), so the SR stage is
IF-II-L. 1200 images per class (1.2M at 256×256), the paper's set size.

Hardware: sized for 64 accelerators at batch 64 per host step (IF-I-XL in bfloat16 needs about
9 GB per replica).

Paper: not an experiment of the synthetic-data paper; the pretrained IF cascade reports a
zero-shot COCO FID of 6.66 (DeepFloyd's model card), the reference before fine-tuning.
"""

import ml_collections

_STAGE = dict(
    enabled=True,
    checkpoint="",
    sampler="ddpm",
    log_var_mix=0.0,
    aug_level=0.0,
    threshold_percentile=95.0,
)


def get_config():
    c = ml_collections.ConfigDict()
    c.stage = "sample"
    c.seed = 0
    c.workdir = "runs/if_sample"
    c.out_dir = "runs/if_sample/shards"
    c.dataset = "imagenet"
    c.classes = ()
    c.per_class = 1200
    c.shard_size = 1000
    c.batch_size = 64
    c.text = dict(encoder="xxl", checkpoint="", tokenizer="", max_length=77, cache="")
    c.base = dict(_STAGE, preset="if_i_xl", checkpoint="runs/if_i_xl", steps=150, guidance=7.0)
    c.sr1 = dict(
        _STAGE, preset="if_ii_l", checkpoint="runs/if_ii_l", steps=50, guidance=4.0, aug_level=0.25
    )
    c.sr2 = dict(_STAGE, enabled=False, preset="imagen_sr_1024", steps=32, guidance=1.0)
    c.hardware = "64 accelerators, batch 64"
    c.paper = dict(fid=6.66, note="IF zero-shot COCO FID before fine-tuning, not this paper")
    return c
