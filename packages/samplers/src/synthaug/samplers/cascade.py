"""The cascade: a base model followed by super-resolution stages.

Each stage samples at its own resolution with its own model, parameters, schedule,
guidance, log-variance mix, sampler, step count and noise-augmentation level. A
super-resolution stage is conditioned on the previous stage's output (``cond["lowres"]``),
noised and resized in the stage's ``aug_order`` (Imagen: noise at the low resolution, then
resize; DeepFloyd IF-II: resize, then noise; ADM: resize only), with the level passed as
``cond["aug_level"]``: diffusion-core's ``condition_lowres``, the function training uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from synthaug.diffusion_core.lowres import AUG_ORDERS, RESIZE_METHODS, condition_lowres
from synthaug.diffusion_core.schedules import DiscreteSchedule, discrete_schedule
from synthaug.samplers.guidance import DEFAULT_PERCENTILE
from synthaug.samplers.sampling import ddim_sample, ddpm_sample

Array = jax.Array

__all__ = [
    "CascadeStage",
    "UNetModelFn",
    "cascade_sample",
    "paper_cascade_settings",
]

SAMPLERS = ("ddpm", "ddim")


@dataclasses.dataclass(frozen=True)
class UNetModelFn:
    """Adapter from a diffusion-core U-Net's ``apply`` to the sampler's model function.

    ``UNetModelFn(apply_fn)(params, x, t, cond)`` calls
    ``apply_fn({"params": params}, x, t, cond["text_emb"], cond["text_mask"], lowres=...,
    aug_level=..., labels=...)``, passing ``lowres``/``aug_level``/``labels`` only when
    present in ``cond`` (and no text for a ``cond`` without ``text_emb``: ADM's class labels). Use it as
    ``jax.tree_util.Partial(UNetModelFn(model.apply), params)``. Instances compare equal when
    their ``apply_fn`` does, so compiled samplers are reused across calls.
    """

    apply_fn: Callable[..., Array]

    def __call__(self, params, x, t, cond):
        extra = {k: cond[k] for k in ("lowres", "aug_level", "labels") if k in cond}
        if "text_emb" not in cond:
            return self.apply_fn({"params": params}, x, t, **extra)
        return self.apply_fn({"params": params}, x, t, cond["text_emb"], cond["text_mask"], **extra)


@dataclasses.dataclass(frozen=True, eq=False)
class CascadeStage:
    """One stage of a cascade.

    Attributes:
      model_fn: ``model_fn(x, t, cond)``, or ``model_fn(params, x, t, cond)`` when ``params``
        is given (e.g. :class:`UNetModelFn`).
      schedule: the model's discrete schedule, or a schedule name on 1000 steps (see
        :func:`synthaug.diffusion_core.discrete_schedule`: ``"cosine"``, ``"linear"``,
        ``"nichol_cosine"``, ``"ddpm_linear"``).
      resolution: output height and width.
      params: the model's parameters (traced, not compiled in), or ``None``.
      guidance_scale: classifier-free guidance ``w`` (1 = off).
      log_var_mix: DDPM log-variance mix ``v``.
      variance: ``"fixed"`` (``log_var_mix``) or ``"learned_range"`` (see
        :func:`~synthaug.samplers.ddpm_sample`).
      sampler: ``"ddpm"`` or ``"ddim"``.
      num_steps: number of (evenly spaced) steps; ``None`` uses every step.
      eta: DDIM noise level.
      aug_level: noise-conditioning augmentation level of the low-resolution input (SR).
      thresholding: ``None``, ``"static"`` or ``"dynamic"``.
      threshold_percentile: dynamic-thresholding percentile.
      prediction_type: ``"eps"``, ``"v"`` or ``"x0"``.
      upsample_method: how the low-resolution input is resized: a ``jax.image.resize``
        method or ``"bilinear_align_corners"`` (the model's ``diffusion.resize_method``).
      aug_order: how the previous stage's output becomes this stage's ``lowres`` (the
        model's ``diffusion.aug_order``): ``"noise_then_resize"`` (Imagen: noise at
        ``aug_level`` at the low resolution, then resize), ``"resize_then_noise"`` (DeepFloyd
        IF-II: resize, then noise at the integer step ``round(aug_level * 1000)`` of the
        discrete ``aug_schedule``) or ``"resize_only"`` (ADM's upsamplers, trained without
        augmentation); see :func:`synthaug.diffusion_core.condition_lowres`.
      aug_schedule: the augmentation schedule's name (the model's ``diffusion.aug_schedule``).
      unverified: names of settings that are not confirmed by the paper.
    """

    model_fn: Callable[..., Array]
    schedule: DiscreteSchedule | str
    resolution: int
    params: Any = None
    guidance_scale: float = 1.0
    log_var_mix: float = 0.0
    variance: str = "fixed"
    sampler: str = "ddpm"
    num_steps: int | None = None
    eta: float = 0.0
    aug_level: float = 0.0
    thresholding: str | None = "dynamic"
    threshold_percentile: float = DEFAULT_PERCENTILE
    prediction_type: str = "eps"
    upsample_method: str = "bilinear"
    aug_order: str = "noise_then_resize"
    aug_schedule: str = "cosine"
    unverified: tuple[str, ...] = ()

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"CascadeStage.sampler must be one of {SAMPLERS}, got {self.sampler!r}"
            )
        if self.aug_order not in AUG_ORDERS:
            raise ValueError(
                f"CascadeStage.aug_order must be one of {AUG_ORDERS}, got {self.aug_order!r}"
            )
        if self.upsample_method not in RESIZE_METHODS:
            raise ValueError(
                f"CascadeStage.upsample_method must be one of {RESIZE_METHODS}, "
                f"got {self.upsample_method!r}"
            )
        if int(self.resolution) < 1:
            raise ValueError(f"CascadeStage.resolution must be positive, got {self.resolution}")
        if not 0.0 <= float(self.aug_level) <= 1.0:
            raise ValueError(f"CascadeStage.aug_level must lie in [0, 1], got {self.aug_level}")
        if not isinstance(self.schedule, DiscreteSchedule | str):
            raise TypeError(
                "CascadeStage.schedule must be a DiscreteSchedule or a schedule name, "
                f"got {type(self.schedule).__name__}"
            )

    def discrete_schedule(self) -> DiscreteSchedule:
        """The stage's :class:`DiscreteSchedule`."""
        if isinstance(self.schedule, DiscreteSchedule):
            return self.schedule
        return discrete_schedule(self.schedule, 1000)

    def bound_model_fn(self) -> Callable[..., Array]:
        """``model_fn(x, t, cond)`` with the parameters bound as traced arguments."""
        if self.params is None:
            return self.model_fn
        return Partial(self.model_fn, self.params)


def paper_cascade_settings() -> tuple[dict[str, Any], ...]:
    """The paper's final sampling settings for the 64 -> 256 -> 1024 cascade.

    Returns three dicts of :class:`CascadeStage` keyword arguments (everything but the model
    and its parameters), e.g. ``CascadeStage(model_fn=f, params=p, **settings[0])``:

    * base 64x64: guidance 1.25, log-variance mix 0.0, DDPM, 1000 steps, cosine schedule;
    * SR 64->256: guidance 1.0, log-variance mix 0.1, DDPM, 1000 steps, aug level 0, cosine;
    * SR 256->1024: guidance 1.0, DDIM, 32 steps, aug level 0, the linear schedule. The
      log-variance mix, sampler and step count of this stage are not confirmed by the paper
      and are listed in its ``unverified`` entry.

    Dynamic thresholding at the 99.5th percentile is used at every stage (Imagen).
    """
    common = {"thresholding": "dynamic", "threshold_percentile": 99.5, "prediction_type": "eps"}
    return (
        dict(
            resolution=64,
            schedule="cosine",
            guidance_scale=1.25,
            log_var_mix=0.0,
            sampler="ddpm",
            num_steps=1000,
            aug_level=0.0,
            **common,
        ),
        dict(
            resolution=256,
            schedule="cosine",
            guidance_scale=1.0,
            log_var_mix=0.1,
            sampler="ddpm",
            num_steps=1000,
            aug_level=0.0,
            **common,
        ),
        dict(
            resolution=1024,
            schedule="linear",
            guidance_scale=1.0,
            log_var_mix=0.0,
            sampler="ddim",
            num_steps=32,
            eta=0.0,
            aug_level=0.0,
            unverified=("log_var_mix", "sampler", "num_steps"),
            **common,
        ),
    )


def cascade_sample(
    stages: Sequence[CascadeStage],
    rng: Array,
    *,
    cond: Mapping[str, Any],
    channels: int = 3,
    sharding: jax.sharding.Sharding | None = None,
) -> list[Array]:
    """Sample a cascade: the first stage from noise, each later one conditioned on the last.

    Args:
      stages: the stages, lowest resolution first.
      rng: key; stage ``i`` splits ``fold_in(rng, i)`` into the augmentation-noise key and
        the sampling key.
      cond: conditioning shared by all stages (``text_emb``, ``text_mask``), batch ``B``.
      channels: image channels.
      sharding: optional sharding of the ``[B, ...]`` samples (see :func:`ddpm_sample`).

    Returns:
      The output of every stage, ``[B, r_i, r_i, channels]`` float32 in [-1, 1] (roughly).
    """
    if not stages:
        raise ValueError("stages must hold at least one CascadeStage")
    cond = {k: jnp.asarray(v) for k, v in cond.items()}
    if not cond:
        raise ValueError("cond must hold at least one array to give the batch size")
    batch = next(iter(cond.values())).shape[0]
    outputs: list[Array] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, CascadeStage):
            raise TypeError(f"stages[{i}] must be a CascadeStage, got {type(stage).__name__}")
        key_aug, key_sample = jax.random.split(jax.random.fold_in(rng, i))
        stage_cond = dict(cond)
        if outputs:
            # diffusion-core's conditioning of the low-res input, as in training.
            stage_cond["lowres"] = condition_lowres(
                outputs[-1],
                rng=key_aug,
                aug_level=stage.aug_level,
                out_size=stage.resolution,
                order=stage.aug_order,
                aug_schedule=stage.aug_schedule,
                resize_method=stage.upsample_method,
            )
        if outputs:
            stage_cond["aug_level"] = jnp.full((batch,), stage.aug_level, jnp.float32)
        kwargs = dict(
            cond=stage_cond,
            guidance_scale=stage.guidance_scale,
            prediction_type=stage.prediction_type,
            thresholding=stage.thresholding,
            threshold_percentile=stage.threshold_percentile,
            num_steps=stage.num_steps,
            sharding=sharding,
        )
        shape = (batch, stage.resolution, stage.resolution, channels)
        model_fn = stage.bound_model_fn()
        schedule = stage.discrete_schedule()
        if stage.sampler == "ddpm":
            out = ddpm_sample(
                model_fn,
                schedule,
                shape,
                key_sample,
                log_var_mix=stage.log_var_mix,
                variance=stage.variance,
                **kwargs,
            )
        else:
            out = ddim_sample(
                model_fn,
                schedule,
                shape,
                key_sample,
                eta=stage.eta,
                variance=stage.variance,
                **kwargs,
            )
        outputs.append(out)
    return outputs
