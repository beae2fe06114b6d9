"""FID reference statistics of ImageNet train / val at 64×64 and 256×256, as ADM computes them.

Variants: ``train64``, ``val64``, ``train256`` (default), ``val256``: the references of the
paper's FID table (256×256: train 1.76, val 2.81; 64×64: train 1.21, val 2.51). Each image is
decoded with PIL and brought to the size by guided-diffusion's ``center_crop_arr`` (box halving,
bicubic resize of the shorter side, center crop); the output is ADM's ``.npz`` (``mu``,
``sigma``, ``mu_s``, ``sigma_s``), which ``evaluate`` (``config.reference``) and ADM's
``evaluator.py`` read.

Command:
    synthaug fid-stats --config paper/fid_stats:val256 \
        --config.data.data_dir=/data/tfds \
        --config.inception_checkpoint=/ckpt/pt_inception-2015-12-05-6726825d.pth \
        --config.out=/stats/imagenet_val_256.npz --config.workdir=/runs/fid_stats_val256
    # several hosts: synthaug-launch ... -- synthaug fid-stats ... (each reads its share);
    # a killed run resumes from workdir/fid_stats/.

Hardware: one TPU-v4 host or one GPU; train is 1.28M images (val 50K), decoding dominates.
"""

import ml_collections

VARIANTS = {  # split, size, the paper's FID against these statistics
    "train64": ("train", 64, 1.21),
    "val64": ("validation", 64, 2.51),
    "train256": ("train", 256, 1.76),
    "val256": ("validation", 256, 2.81),
}


def get_config(variant=None):
    variant = variant or "train256"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    split, size, fid = VARIANTS[variant]
    c = ml_collections.ConfigDict()
    c.stage = "fid-stats"
    c.workdir = f"runs/fid_stats_{variant}"
    c.out = f"stats/imagenet_{'val' if split == 'validation' else split}_{size}.npz"
    c.data = dict(source="imagenet_tfds", data_dir="", split=split)
    c.image_size = size
    c.num_images = 0
    c.batch_size = 200
    c.hardware = "one TPU-v4 host (4 chips) or one GPU"
    c.paper = dict(fid=fid, note="the paper's FID of its samples against these statistics")
    return c
