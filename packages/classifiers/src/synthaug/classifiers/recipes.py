"""Training recipes as ``ml_collections.ConfigDict``s.

The peak learning rate is ``base_lr * batch_size / lr_batch_base`` and is computed from the
config when the optimiser is built (:func:`peak_learning_rate`), so overriding
``batch_size`` scales it. Configs are locked: unknown keys are an error.

- :func:`resnet_recipe`: Goyal et al. — SGD with Nesterov momentum 0.9, peak lr
  0.1 x batch/256, 5 warmup epochs, cosine decay, weight decay 1e-4 on kernels only (not
  BatchNorm or biases), 90 epochs at batch 1024, label smoothing optional.
- :func:`deit_recipe`: Touvron et al. — AdamW, lr 5e-4 x batch/512, weight decay 0.05,
  300 epochs, 5 warmup epochs, cosine to 1e-5, label smoothing 0.1, RandAugment m9/mstd0.5,
  Mixup 0.8 / CutMix 1.0, random erasing 0.25, stochastic depth 0.1.
- :func:`vit_recipe`: big_vision's ImageNet ViT-S/16 (``configs/vit_s16_i1k.py``) —
  Adam with bfloat16 first moment, lr 1e-3 at batch 1024, 10k warmup steps, cosine,
  decoupled weight decay 1e-4 scaled by the schedule, clipping 1.0, RandAugment 2/10,
  Mixup p=0.2, global-average-pool head with a tanh pre-logits layer.
- :func:`demo_recipe`: small models on 32x32 images (the CPU demo).
"""

from __future__ import annotations

import ml_collections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_TRAIN_EXAMPLES = 1_281_167

OPTIMIZERS = ("sgd", "adamw")
WEIGHT_DECAY_SCALES = ("lr", "schedule")
MIXUP_MODES = ("timm", "big_vision")
SCHEDULES = ("cosine", "step", "constant")
AUGMENTS = ("none", "flip", "pad_crop", "pad_crop_flip")


def _base(**kw) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = "resnet50"
    c.model_kwargs = ml_collections.ConfigDict()
    c.num_classes = 1000
    c.image_size = 224
    c.batch_size = 1024
    c.eval_batch_size = 1024
    c.epochs = 90
    c.total_steps = 0  # > 0 overrides epochs * steps_per_epoch
    c.train_examples = IMAGENET_TRAIN_EXAMPLES
    c.optimizer = "sgd"
    c.base_lr = 0.1
    c.lr_batch_base = 256
    c.momentum = 0.9
    c.nesterov = True
    c.adam_b1 = 0.9
    c.adam_b2 = 0.999
    c.adam_eps = 1e-8
    c.adam_mu_dtype = ""  # "" = the parameters' dtype; big_vision: "bfloat16"
    c.weight_decay_scale = "lr"  # adamw: decay x lr(t) ("lr") or x lr(t)/peak ("schedule")
    c.weight_decay = 1e-4
    c.schedule = "cosine"
    c.warmup_epochs = 5.0
    c.warmup_steps = 0  # > 0 overrides warmup_epochs
    c.min_lr = 0.0
    c.step_boundaries = (30, 60, 80)  # epochs, for schedule="step" (x0.1 each)
    c.grad_clip_norm = 0.0  # 0 = off
    c.label_smoothing = 0.0
    c.augment = "none"  # on-device crop/flip for uint8 inputs
    c.randaugment = ml_collections.ConfigDict(dict(num_layers=0, magnitude=9.0, magnitude_std=0.5))
    c.mixup_mode = "timm"  # "timm": Mixup/CutMix with the reversed batch; "big_vision"
    c.mixup_alpha = 0.0
    c.cutmix_alpha = 0.0
    c.mixup_prob = 1.0
    c.mixup_switch_prob = 0.5
    c.random_erase_prob = 0.0
    c.mean = IMAGENET_MEAN
    c.std = IMAGENET_STD
    c.dtype = "float32"
    c.seed = 0
    c.checkpoint_every_steps = 1000
    c.checkpoint_max_to_keep = 2
    c.eval_every_epochs = 1
    c.log_every_steps = 100
    c.update(kw)
    c.lock()
    return c


def base_config() -> ml_collections.ConfigDict:
    """Every recipe key with its default (unlocked): the schema the recipes fill in."""
    c = _base()
    return ml_collections.ConfigDict(c.to_dict())


def resnet_recipe(
    batch_size: int = 1024,
    epochs: int = 90,
    *,
    model: str = "resnet50",
    num_classes: int = 1000,
    label_smoothing: float = 0.0,
    schedule: str = "cosine",
    train_examples: int = IMAGENET_TRAIN_EXAMPLES,
) -> ml_collections.ConfigDict:
    """The ResNet recipe (90 epochs, batch 1024, SGD + Nesterov, lr 0.1 x batch/256).

    Source: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    (arXiv:1706.02677): linear lr scaling 0.1 x batch/256, 5 warmup epochs, momentum 0.9,
    weight decay 1e-4 not on BatchNorm; cosine decay and Nesterov as in torchvision's
    reference recipe; the paper (Azizi et al. 2023, Appendix A.4) trains its ResNets with
    this standard recipe.

    Args:
      batch_size: global batch size (the lr scales with it).
      epochs: training epochs.
      model: a ResNet / ResNet-RS registry name.
      num_classes: classifier head size.
      label_smoothing: e.g. 0.1 (0 = off).
      schedule: ``"cosine"`` or ``"step"`` (x0.1 at epochs 30, 60, 80).
      train_examples: training set size (sets steps per epoch).

    Returns:
      a locked ConfigDict.
    """
    _check_common(batch_size, epochs, schedule)
    return _base(
        model=model,
        num_classes=num_classes,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        epochs=epochs,
        label_smoothing=label_smoothing,
        schedule=schedule,
        train_examples=train_examples,
    )


def deit_recipe(
    batch_size: int = 1024,
    epochs: int = 300,
    *,
    model: str = "deit_small_patch16_224",
    num_classes: int = 1000,
    drop_path_rate: float = 0.1,
    randaugment: bool = True,
    mixup: bool = True,
    train_examples: int = IMAGENET_TRAIN_EXAMPLES,
) -> ml_collections.ConfigDict:
    """The DeiT recipe (AdamW, lr 5e-4 x batch/512, wd 0.05, 300 epochs).

    Source: Touvron et al., "Training data-efficient image transformers & distillation
    through attention" (arXiv:2012.12877), Table 9, and timm's DeiT training arguments
    (RandAugment m9-mstd0.5, Mixup 0.8 / CutMix 1.0, random erasing 0.25, label smoothing
    0.1, stochastic depth 0.1, cosine to 1e-5, 5 warmup epochs). The paper trains DeiT-S/B/L
    with it; its ViT-S/16 follows :func:`vit_recipe`.

    Args:
      batch_size: global batch size (the lr scales with it).
      epochs: training epochs.
      model: a ViT / DeiT registry name.
      num_classes: classifier head size.
      drop_path_rate: stochastic depth (DeiT-S 0.1; DeiT-B 0.1; DeiT-L larger).
      randaugment: RandAugment m9-mstd0.5, 2 layers.
      mixup: Mixup 0.8 / CutMix 1.0 (switch prob 0.5).
      train_examples: training set size (sets steps per epoch).

    Returns:
      a locked ConfigDict.
    """
    _check_common(batch_size, epochs, "cosine")
    c = _base(
        model=model,
        num_classes=num_classes,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        epochs=epochs,
        optimizer="adamw",
        base_lr=5e-4,
        lr_batch_base=512,
        weight_decay=0.05,
        min_lr=1e-5,
        label_smoothing=0.1,
        mixup_alpha=0.8 if mixup else 0.0,
        cutmix_alpha=1.0 if mixup else 0.0,
        random_erase_prob=0.25,
        train_examples=train_examples,
    )
    c.model_kwargs = ml_collections.ConfigDict(dict(drop_path_rate=drop_path_rate))
    c.randaugment.num_layers = 2 if randaugment else 0
    return c


def vit_recipe(
    batch_size: int = 1024,
    epochs: int = 90,
    *,
    model: str = "vit_s16_224",
    num_classes: int = 1000,
    train_examples: int = IMAGENET_TRAIN_EXAMPLES,
) -> ml_collections.ConfigDict:
    """big_vision's ImageNet ViT-S/16 recipe (``big_vision/configs/vit_s16_i1k.py``;
    Beyer, Zhai, Kolesnikov, "Better plain ViT baselines for ImageNet-1k", 2022: 76.5%
    top-1 after 90 epochs, 79.8% after 300).

    - Model: ViT with global average pooling (no class token), fixed 2-D sin-cos position
      embeddings, a ``pre_logits`` Dense + tanh of the model width, a zero-initialised head
      and tanh-approximate GELU (``model_kwargs``).
    - Optimiser: Adam (0.9, 0.999, first moment in bfloat16), lr 1e-3 at batch 1024
      (``lr_batch_base=1024``: big_vision does not rescale, so at its batch the lr is the
      same), 10,000 linear warmup steps, cosine decay to 0, global-norm clipping at 1.0.
    - Weight decay 1e-4 on kernels only, decoupled as big_vision applies it:
      ``update = -(lr(t) * adam + 1e-4 * lr(t) / peak_lr * w)``, i.e. scaled by the
      schedule's multiplier but not by the peak lr (``weight_decay_scale="schedule"``).
    - Augmentation: Inception crop to 224 and a horizontal flip in the input pipeline
      (``synthaug.imagenet_data.inception_crop_flip``), RandAugment with 2 layers at
      magnitude 10 (timm's op set; big_vision's archived TF ops differ in detail), values
      scaled to [-1, 1] (mean = std = 0.5), Mixup with ``p = 0.2`` in big_vision's form
      (one Beta(0.2, 0.2) weight per batch, each example mixed with its neighbour), no
      CutMix, no label smoothing, no random erasing, no stochastic depth; softmax
      cross-entropy.
    - Eval: resize the shorter side to 256, center crop 224 (the input pipeline's).

    Args:
      batch_size: global batch size (the lr scales with it from 1e-3 at 1024).
      epochs: training epochs (90 or 300 in big_vision).
      model: a ViT registry name (``vit_s16_224`` is big_vision's ``S/16``).
      num_classes: classifier head size.
      train_examples: training set size (sets steps per epoch).

    Returns:
      a locked ConfigDict.
    """
    _check_common(batch_size, epochs, "cosine")
    c = _base(
        model=model,
        num_classes=num_classes,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        epochs=epochs,
        optimizer="adamw",
        base_lr=1e-3,
        lr_batch_base=1024,
        adam_mu_dtype="bfloat16",
        weight_decay=1e-4,
        weight_decay_scale="schedule",
        warmup_steps=10_000,
        min_lr=0.0,
        grad_clip_norm=1.0,
        mixup_mode="big_vision",
        mixup_alpha=0.2,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        train_examples=train_examples,
        log_every_steps=50,
    )
    c.model_kwargs = ml_collections.ConfigDict(
        dict(
            pool_type="gap",
            posemb="sincos2d",
            rep_size=True,
            head_zeroinit=True,
            gelu_approximate=True,
        )
    )
    c.randaugment.num_layers = 2
    c.randaugment.magnitude = 10.0
    c.randaugment.magnitude_std = 0.0
    return c


def demo_recipe(
    model: str = "resnet_tiny",
    *,
    num_classes: int = 10,
    batch_size: int = 128,
    epochs: int = 3,
    image_size: int = 32,
    train_examples: int = 0,
) -> ml_collections.ConfigDict:
    """A small-model recipe for 32x32 images (the CPU demo): trains in well under a minute.

    Source: this package's own choice for the digits demo (no published recipe): the
    ResNet recipe's optimiser with a doubled lr, one warmup epoch and pad-and-crop.

    ResNets use SGD + Nesterov (lr 0.1 x batch/256 x 2), ViTs AdamW (lr 1e-3 x batch/512);
    one warmup epoch, cosine decay, random pad-and-crop (no flips: digits are not
    mirror-symmetric), mean/std 0.5.

    Args:
      model: ``"resnet_tiny"``, ``"resnet_small_cifar"`` or ``"vit_tiny_patch4_32"``.
      num_classes: classifier head size.
      batch_size: global batch size.
      epochs: training epochs.
      image_size: input side.
      train_examples: training set size (``fit`` fills it in from the data).

    Returns:
      a locked ConfigDict.
    """
    _check_common(batch_size, epochs, "cosine")
    is_vit = model.startswith("vit") or model.startswith("deit")
    return _base(
        model=model,
        num_classes=num_classes,
        image_size=image_size,
        batch_size=batch_size,
        eval_batch_size=256,
        epochs=epochs,
        train_examples=train_examples,
        optimizer="adamw" if is_vit else "sgd",
        base_lr=1e-3 if is_vit else 0.2,
        lr_batch_base=512 if is_vit else 256,
        weight_decay=0.05 if is_vit else 5e-4,
        warmup_epochs=1.0,
        augment="pad_crop",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        checkpoint_every_steps=50,
        log_every_steps=10,
    )


def _check_common(batch_size, epochs, schedule):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
    """``base_lr * batch_size / lr_batch_base``.

    Args:
      config: a recipe config.

    Returns:
      the peak learning rate.
    """
    return float(config.base_lr) * config.batch_size / config.lr_batch_base


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise ``ValueError`` naming the first bad value in a recipe config."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"config.optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"config.schedule must be one of {SCHEDULES}, got {config.schedule!r}")
    if config.augment not in AUGMENTS:
        raise ValueError(f"config.augment must be one of {AUGMENTS}, got {config.augment!r}")
    for key in ("batch_size", "eval_batch_size", "num_classes", "image_size"):
        if int(config[key]) < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]!r}")
    if len(config.mean) != 3 or len(config.std) != 3:
        raise ValueError(f"config.mean/std must have 3 values, got {config.mean}, {config.std}")
    if config.get("weight_decay_scale", "lr") not in WEIGHT_DECAY_SCALES:
        raise ValueError(
            f"config.weight_decay_scale must be one of {WEIGHT_DECAY_SCALES}, got "
            f"{config.weight_decay_scale!r}"
        )
    if config.get("mixup_mode", "timm") not in MIXUP_MODES:
        raise ValueError(
            f"config.mixup_mode must be one of {MIXUP_MODES}, got {config.mixup_mode!r}"
        )
    if config.get("adam_mu_dtype", "") not in ("", "float32", "bfloat16"):
        raise ValueError(
            f"config.adam_mu_dtype must be '', 'float32' or 'bfloat16', got "
            f"{config.adam_mu_dtype!r}"
        )
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"config.dtype must be float32/bfloat16/float16, got {config.dtype!r}")
