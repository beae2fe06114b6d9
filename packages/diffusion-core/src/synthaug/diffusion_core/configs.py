"""Model and training configs: the Imagen presets, tiny presets, and ``make_model``.

A preset is an ml_collections ``ConfigDict`` (locked: setting an unknown key is an error)
with four sections:

* ``model``: ``kind`` (``"unet"`` or ``"efficient_unet"``) and the module's attributes;
* ``diffusion``: noise schedule, prediction type, text dropout, noise-conditioning
  augmentation of the low-res input (SR models);
* ``optimizer``: name (``"adafactor"`` / ``"adam"``), learning-rate schedule (linear warmup
  then cosine decay), gradient clipping;
* ``train``: EMA decay, batch size, seed, checkpoint cadence, frozen parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import ml_collections

from synthaug.diffusion_core.adm import ADMUNet
from synthaug.diffusion_core.efficient_unet import EfficientUNet
from synthaug.diffusion_core.unet import UNet

__all__ = [
    "PRESETS",
    "abstract_params",
    "get_preset",
    "is_super_resolution",
    "make_model",
    "param_count",
]

_KINDS = {"unet": UNet, "efficient_unet": EfficientUNet, "adm": ADMUNet}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _diffusion(*, schedule: str, lowres_size: int = 0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            # "cosine", "linear" (continuous, Imagen) or "nichol_cosine", "ddpm_linear" (the
            # discrete 1000-step schedules ADM and DeepFloyd IF were trained with)
            "schedule": schedule,
            "prediction_type": "eps",  # "eps", "v" or "x0"
            "p_uncond": 0.1,  # text dropped with this probability (classifier-free guidance)
            # class-conditional models (ADM): a label replaced by -1 ("no label") with this
            # probability (classifier-free guidance on labels)
            "label_dropout": 0.0,
            "lowres_size": lowres_size,  # SR models: resolution of the conditioning image
            # how the low-res image becomes the model's input (synthaug.diffusion_core.lowres):
            # "noise_then_resize" (Imagen), "resize_then_noise" (DeepFloyd IF-II: resized,
            # then noised at the integer step round(level * 1000) of the discrete
            # aug_schedule) or "resize_only" (ADM's upsamplers: no noise)
            "aug_order": "noise_then_resize",
            "aug_schedule": "cosine",  # noise-conditioning augmentation schedule
            "aug_level_min": 0.0,  # training augmentation level ~ U(min, max)
            "aug_level_max": 1.0,
            "sample_aug_level": 0.0,  # the fixed level used at sampling time
            # a jax.image.resize method or "bilinear_align_corners" (PyTorch's align_corners)
            "resize_method": "bilinear",
            # "fixed" (the log-variance mix) or "learned_range" (the model's extra channels)
            "variance": "fixed",
        }
    )


def _optimizer(*, name: str, lr: float, warmup: int, decay: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": name,  # "adafactor" or "adam"
            "learning_rate": lr,
            "warmup_steps": warmup,
            "decay_steps": decay,  # total steps of warmup + cosine decay
            "end_learning_rate": 0.0,
            "grad_clip": 1.0,  # global-norm clipping (0 disables)
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            # Run clipping and Adam on one flat vector of all parameters (optax.flatten):
            # the same update (up to rounding) in a handful of ops instead of dozens per
            # parameter array. The train step of tiny_base compiles in 5.7-8.0 s instead of
            # 9.8-11.6 s with the tests' quick-compile XLA flags; with XLA's default flags
            # the network's code generation dominates (about 24 s instead of 25 s). For
            # single-device models: a sharded model wants its arrays kept apart. Adafactor
            # is never flattened (it factors each matrix).
            "flatten": False,
        }
    )


def _train(*, batch_size: int, steps: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "ema_decay": 0.9999,
            "batch_size": batch_size,
            "num_steps": steps,
            "seed": 0,
            "save_every": 1000,
            "keep": 3,
            "log_every": 100,
            "freeze": (),  # regexes of '/'-joined parameter paths that are not trained
            # Micro-batches per step: the batch's gradient is the mean of this many
            # micro-batch gradients, computed one after another (less activation memory).
            "grad_accum_steps": 1,
        }
    )


def _config(model: dict, diffusion, optimizer, train) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(
        {"model": model, "diffusion": diffusion, "optimizer": optimizer, "train": train}
    )
    cfg.lock()
    return cfg


def imagen_base_64() -> ml_collections.ConfigDict:
    """The 64x64 base model (~2B parameters): ADM U-Net, Adafactor, cosine schedule."""
    model = {
        "kind": "unet",
        "image_size": 64,
        "model_channels": 512,
        "channel_mult": (1, 2, 3, 4),
        "num_res_blocks": 3,
        "attention_resolutions": (32, 16, 8),
        "cross_attention_resolutions": (32, 16, 8),
        "num_head_channels": 64,
        "text_dim": 4096,
        "dropout": 0.0,
        "dtype": "bfloat16",
        "param_dtype": "float32",
        "remat": True,
    }
    return _config(
        model,
        _diffusion(schedule="cosine"),
        _optimizer(name="adafactor", lr=1e-4, warmup=10_000, decay=210_000),
        _train(batch_size=2048, steps=210_000),
    )


def imagen_sr_256() -> ml_collections.ConfigDict:
    """The 64->256 Efficient U-Net (~600M): self- and text cross-attention at the lowest
    resolution only, Adam, cosine schedule."""
    model = {
        "kind": "efficient_unet",
        "image_size": 256,
        "initial_channels": 128,
        "block_channels": (128, 256, 512, 1024),
        "num_res_blocks": (2, 4, 8, 8),
        "block_strides": (2, 2, 2, 2),
        "self_attention": (False, False, False, True),
        "cross_attention": (False, False, False, True),
        "skip_per_res_block": True,
        "num_heads": 8,
        "embed_dim": 512,
        "text_dim": 4096,
        "dtype": "bfloat16",
        "param_dtype": "float32",
        "remat": True,
    }
    return _config(
        model,
        _diffusion(schedule="cosine", lowres_size=64),
        _optimizer(name="adam", lr=1e-4, warmup=10_000, decay=490_000),
        _train(batch_size=2048, steps=490_000),
    )


def imagen_sr_1024() -> ml_collections.ConfigDict:
    """The 256->1024 Efficient U-Net (~400M): as 64->256 without self-attention (text
    cross-attention kept), one skip connection per block, the linear-beta schedule."""
    cfg = imagen_sr_256()
    with cfg.unlocked():
        cfg.model.image_size = 1024
        cfg.model.self_attention = (False, False, False, False)
        cfg.model.skip_per_res_block = False
        cfg.diffusion.schedule = "linear"
        cfg.diffusion.lowres_size = 256
    return cfg


def tiny_base() -> ml_collections.ConfigDict:
    """A tiny text-conditioned 16x16 U-Net for tests and the CPU demo."""
    model = {
        "kind": "unet",
        "image_size": 16,
        "model_channels": 8,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (8,),
        "cross_attention_resolutions": (8,),
        "num_head_channels": 8,
        "text_dim": 32,
        "text_token_dim": 32,
        "num_groups": 4,
        "dropout": 0.0,
        "dtype": "float32",
        "param_dtype": "float32",
        "remat": False,
    }
    cfg = _config(
        model,
        _diffusion(schedule="cosine"),
        _optimizer(name="adam", lr=1e-3, warmup=20, decay=2000),
        _train(batch_size=16, steps=300),
    )
    with cfg.unlocked():
        cfg.train.ema_decay = 0.99
        cfg.train.save_every = 100
        cfg.train.log_every = 50
    return cfg


def tiny_sr() -> ml_collections.ConfigDict:
    """A tiny text-conditioned 16->32 Efficient U-Net for tests and the CPU demo."""
    model = {
        "kind": "efficient_unet",
        "image_size": 32,
        "initial_channels": 16,
        "block_channels": (16, 32),
        "num_res_blocks": (1, 1),
        "block_strides": (1, 2),
        "self_attention": (False, True),
        "cross_attention": (False, True),
        "skip_per_res_block": True,
        "num_heads": 2,
        "embed_dim": 32,
        "text_dim": 32,
        "text_token_dim": 32,
        "num_groups": 8,
        "dtype": "float32",
        "param_dtype": "float32",
        "remat": False,
    }
    cfg = _config(
        model,
        _diffusion(schedule="cosine", lowres_size=16),
        _optimizer(name="adam", lr=1e-3, warmup=20, decay=2000),
        _train(batch_size=8, steps=300),
    )
    with cfg.unlocked():
        cfg.train.ema_decay = 0.99
        cfg.train.save_every = 100
        cfg.train.log_every = 50
    return cfg


def _pretrained_config(model: dict, *, schedule: str, lowres_size: int = 0):
    defaults = {"kind": "adm", "dtype": "float32", "param_dtype": "float32", "remat": False}
    cfg = _config(
        {**defaults, **model},
        _diffusion(schedule=schedule, lowres_size=lowres_size),
        _optimizer(name="adam", lr=1e-5, warmup=1000, decay=100_000),
        _train(batch_size=256, steps=100_000),
    )
    with cfg.unlocked():
        # Models with a learned-range variance output: the sampler reads the extra channels.
        cfg.diffusion.variance = "learned_range"
        if lowres_size:
            cfg.diffusion.aug_schedule = schedule
            if model.get("aug_embedding", False):
                # DeepFloyd IF-II: align-corners resize, then noise at the integer step
                cfg.diffusion.aug_order = "resize_then_noise"
                cfg.diffusion.resize_method = "bilinear_align_corners"
            else:
                # ADM's upsamplers were trained on the resized image without noise
                cfg.diffusion.aug_order = "resize_only"
                cfg.diffusion.aug_level_max = 0.0
    return cfg


def adm_64() -> ml_collections.ConfigDict:
    """OpenAI's ADM ImageNet 64x64 class-conditional model (``64x64_diffusion.pt``, 296M).

    guided-diffusion flags: ``--attention_resolutions 32,16,8 --class_cond True
    --learn_sigma True --num_channels 192 --num_head_channels 64 --num_res_blocks 3
    --resblock_updown True --use_new_attention_order True --use_scale_shift_norm True
    --noise_schedule cosine --diffusion_steps 1000``.
    """
    model = {
        "image_size": 64,
        "out_channels": 6,
        "model_channels": 192,
        "channel_mult": (1, 2, 3, 4),
        "num_res_blocks": 3,
        "attention_resolutions": (2, 4, 8),
        "num_head_channels": 64,
        "num_classes": 1000,
        "dropout": 0.1,
    }
    return _pretrained_config(model, schedule="nichol_cosine")


def adm_sr_256() -> ml_collections.ConfigDict:
    """OpenAI's ADM 64->256 class-conditional upsampler (``64_256_upsampler.pt``, 312M).

    guided-diffusion flags: ``--attention_resolutions 32,16,8 --class_cond True
    --learn_sigma True --large_size 256 --small_size 64 --num_channels 192 --num_heads 4
    --num_res_blocks 2 --resblock_updown True --use_scale_shift_norm True --noise_schedule
    linear --diffusion_steps 1000``; the low-res image is upsampled (bilinear) and
    concatenated to the input, without noise augmentation.
    """
    model = {
        "image_size": 256,
        "out_channels": 6,
        "model_channels": 192,
        "channel_mult": (1, 1, 2, 2, 4, 4),
        "num_res_blocks": 2,
        "attention_resolutions": (8, 16, 32),
        "num_heads": 4,
        "num_head_channels": -1,
        "num_classes": 1000,
        "lowres_channels": 3,
    }
    return _pretrained_config(model, schedule="ddpm_linear", lowres_size=64)


def _if_stage_1(model_channels: int) -> ml_collections.ConfigDict:
    model = {
        "image_size": 64,
        "out_channels": 6,
        "model_channels": model_channels,
        "channel_mult": (1, 2, 3, 4),
        "num_res_blocks": 3,
        "attention_resolutions": (2, 4, 8),
        "num_head_channels": 64,
        "time_embed_dim": 4 * model_channels,
        "activation": "gelu",
        "text_dim": 4096,
        "text_channels": 4 * model_channels,
        "text_pool_heads": 64,
    }
    return _pretrained_config(model, schedule="nichol_cosine")


def if_i_xl() -> ml_collections.ConfigDict:
    """DeepFloyd IF-I-XL (``DeepFloyd/IF-I-XL-v1.0``, 4.3B): the 64x64 T5-XXL-conditioned
    base, model_channels 704 and encoder_channels 2816 (its original config)."""
    return _if_stage_1(704)


def if_ii_l() -> ml_collections.ConfigDict:
    """DeepFloyd IF-II-L (``DeepFloyd/IF-II-L-v1.0``, 1.2B): the 64->256 T5-XXL-conditioned
    super-resolution stage.

    Its diffusers ``unet/config.json``: ``block_out_channels`` (160, 320, 640, 960, 1280),
    ``layers_per_block`` (2, 2, 3, 5, 5), attention (self- and text cross-attention) at the two
    lowest resolutions, ``attention_head_dim`` 64, ``cross_attention_dim`` 1280,
    ``encoder_hid_dim`` 4096, ``class_embed_type`` "timestep" (the noise-augmentation level),
    ``addition_embed_type`` "text" with 64 pooling heads, ``only_cross_attention`` false,
    ``resnet_skip_time_act`` true, ``resnet_out_scale_factor`` and ``mid_block_scale_factor``
    1/0.7071. 1,243,277,190 parameters: 4.97 GB in float32, the size of the published
    ``unet/diffusion_pytorch_model.bin``.
    """
    model = {
        "image_size": 256,
        "out_channels": 6,
        "model_channels": 160,
        "channel_mult": (1, 2, 4, 6, 8),
        "num_res_blocks": (2, 2, 3, 5, 5),
        "attention_resolutions": (8, 16),
        "num_head_channels": 64,
        "time_embed_dim": 1280,
        "activation": "gelu",
        "efficient_activation": True,
        "resblock_output_scale": 1 / 0.7071,
        "mid_output_scale": 1 / 0.7071,
        "text_dim": 4096,
        "text_channels": 1280,
        "text_pool_heads": 64,
        "self_attention": True,
        "lowres_channels": 3,
        "aug_embedding": True,
    }
    cfg = _pretrained_config(model, schedule="nichol_cosine", lowres_size=64)
    with cfg.unlocked():
        cfg.diffusion.sample_aug_level = 0.25
    return cfg


def tiny_adm() -> ml_collections.ConfigDict:
    """A tiny class-conditional ADM (16x16, 10 classes) for tests and fixtures."""
    model = {
        "image_size": 16,
        "out_channels": 6,
        "model_channels": 32,
        "channel_mult": (1, 1),
        "num_res_blocks": 1,
        "attention_resolutions": (2,),
        "num_head_channels": 32,
        "num_classes": 10,
    }
    cfg = _pretrained_config(model, schedule="nichol_cosine")
    with cfg.unlocked():
        cfg.train.batch_size = 4
    return cfg


def tiny_adm_sr() -> ml_collections.ConfigDict:
    """A tiny class-conditional ADM 16->32 upsampler (legacy attention order) for tests."""
    cfg = tiny_adm()
    with cfg.unlocked():
        cfg.model.image_size = 32
        cfg.model.num_heads = 2
        cfg.model.num_head_channels = -1
        cfg.model.lowres_channels = 3
        cfg.diffusion.schedule = "ddpm_linear"
        cfg.diffusion.lowres_size = 16
        cfg.diffusion.aug_schedule = "ddpm_linear"
        cfg.diffusion.aug_order = "resize_only"
        cfg.diffusion.aug_level_max = 0.0
    return cfg


def tiny_if() -> ml_collections.ConfigDict:
    """A tiny IF-I-style base (16x16, the tiny T5 encoder's 64-wide text) for tests and fixtures."""
    model = {
        "image_size": 16,
        "out_channels": 6,
        "model_channels": 32,
        "channel_mult": (1, 1),
        "num_res_blocks": (1, 2),
        "attention_resolutions": (2,),
        "num_head_channels": 32,
        "time_embed_dim": 64,
        "activation": "gelu",
        "text_dim": 64,
        "text_channels": 32,
        "text_pool_heads": 4,
    }
    cfg = _pretrained_config(model, schedule="nichol_cosine")
    with cfg.unlocked():
        cfg.train.batch_size = 4
    return cfg


def tiny_if_sr() -> ml_collections.ConfigDict:
    """A tiny IF-II-style 16->32 super-resolution stage for tests and fixtures."""
    model = {
        "image_size": 32,
        "out_channels": 6,
        "model_channels": 32,
        "channel_mult": (1, 1),
        "num_res_blocks": (1, 2),
        "attention_resolutions": (2,),
        "num_head_channels": 32,
        "time_embed_dim": 64,
        "activation": "gelu",
        "efficient_activation": True,
        "resblock_output_scale": 1 / 0.7071,
        "mid_output_scale": 1 / 0.7071,
        "text_dim": 64,
        "text_channels": 32,
        "text_pool_heads": 4,
        "self_attention": False,
        "lowres_channels": 3,
        "aug_embedding": True,
    }
    cfg = _pretrained_config(model, schedule="nichol_cosine", lowres_size=16)
    with cfg.unlocked():
        cfg.train.batch_size = 4
        cfg.diffusion.sample_aug_level = 0.25
    return cfg


PRETRAINED_PRESETS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "adm_64": adm_64,
    "adm_sr_256": adm_sr_256,
    "if_i_xl": if_i_xl,
    "if_ii_l": if_ii_l,
    "tiny_adm": tiny_adm,
    "tiny_adm_sr": tiny_adm_sr,
    "tiny_if": tiny_if,
    "tiny_if_sr": tiny_if_sr,
}


PRESETS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    **PRETRAINED_PRESETS,
    "imagen_base_64": imagen_base_64,
    "imagen_sr_256": imagen_sr_256,
    "imagen_sr_1024": imagen_sr_1024,
    "tiny_base": tiny_base,
    "tiny_sr": tiny_sr,
}


def get_preset(name: str) -> ml_collections.ConfigDict:
    """A fresh copy of a named preset config.

    Args:
      name: one of ``imagen_base_64``, ``imagen_sr_256``, ``imagen_sr_1024``, ``tiny_base``,
        ``tiny_sr``.

    Returns:
      The (locked) ``ConfigDict`` with ``model``, ``diffusion``, ``optimizer``, ``train``.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def _model_section(config) -> ml_collections.ConfigDict:
    if "model" in config and "kind" not in config:
        return config.model
    return config


def is_super_resolution(config) -> bool:
    """Whether a (full or model) config describes a super-resolution model."""
    m = _model_section(config)
    if m.kind == "efficient_unet":
        return True
    return bool(m.get("lowres_channels", 0))


def make_model(config) -> UNet | EfficientUNet:
    """Build the Flax module described by a config.

    Args:
      config: a full preset (with a ``model`` section) or just its ``model`` section;
        ``kind`` picks :class:`UNet` or :class:`EfficientUNet`, the other keys are the
        module's attributes (``dtype``/``param_dtype`` as names like ``"bfloat16"``).

    Returns:
      The module (unbound).

    Raises:
      ValueError: unknown ``kind``, unknown attribute or dtype name.
    """
    m = _model_section(config)
    kind = m.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"model.kind must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    kwargs = {}
    for key, value in m.items():
        if key == "kind":
            continue
        if key not in fields:
            raise ValueError(f"model.{key} is not an attribute of {cls.__name__}")
        if key in ("dtype", "param_dtype") and isinstance(value, str):
            if value not in _DTYPES:
                raise ValueError(f"model.{key} must be one of {sorted(_DTYPES)}, got {value!r}")
            value = _DTYPES[value]
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def abstract_params(config, *, batch_size: int = 1, text_len: int = 128) -> dict:
    """The parameter tree's shapes and dtypes via ``jax.eval_shape`` (nothing is allocated).

    Args:
      config: a full preset or its ``model`` section.
      batch_size, text_len: shapes of the dummy inputs (do not affect the parameters).

    Returns:
      A tree of ``jax.ShapeDtypeStruct``.
    """
    import jax

    m = _model_section(config)
    model = make_model(m)
    s = m.image_size
    f32 = jnp.float32
    x = jax.ShapeDtypeStruct((batch_size, s, s, m.get("in_channels", 3)), f32)
    t = jax.ShapeDtypeStruct((batch_size,), f32)
    text_dim = m.get("text_dim", None)
    te = tm = None
    if text_dim is not None:
        te = jax.ShapeDtypeStruct((batch_size, text_len, text_dim), f32)
        tm = jax.ShapeDtypeStruct((batch_size, text_len), jnp.bool_)
    lr = al = None
    if is_super_resolution(m):
        lr = jax.ShapeDtypeStruct((batch_size, s, s, m.get("lowres_channels", 3)), f32)
        al = t

    extra = {}
    if m.get("num_classes", None) is not None:
        extra["labels"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)

    def init(x, t, te, tm, lr, al, extra):
        return model.init(jax.random.key(0), x, t, te, tm, lowres=lr, aug_level=al, **extra)[
            "params"
        ]

    return jax.eval_shape(init, x, t, te, tm, lr, al, extra)


def param_count(config) -> int:
    """The number of parameters of a config's model, from :func:`abstract_params`."""
    import math

    import jax

    return int(sum(math.prod(p.shape) for p in jax.tree.leaves(abstract_params(config))))
