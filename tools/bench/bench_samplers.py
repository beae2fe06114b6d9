"""Benchmark: sampler overhead and cascade throughput.

* overhead = time(one N-step sampling call) / (N x time(one denoiser call)), for the tiny
  diffusion-core U-Net at batch 64 (target <= 1.05: the compiled loop adds at most 5% to the
  network's own cost);
* images/s of the demo cascade (tiny base 16x16 -> tiny SR 32x32).

    python tools/bench/run.py --only samplers [--quick]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from harness import Result, block, measure
from jax.tree_util import Partial

from synthaug.diffusion_core import get_preset, make_model
from synthaug.diffusion_core.schedules import cosine_log_snr, discretize
from synthaug.samplers import CascadeStage, UNetModelFn, cascade_sample, ddim_sample, ddpm_sample

BATCH = 64
TEXT_LEN = 8


def _init(preset: str, batch: int):
    cfg = get_preset(preset)
    model = make_model(cfg)
    m = cfg.model
    s = m.image_size
    x = jnp.zeros((batch, s, s, 3), jnp.float32)
    t = jnp.full((batch,), 0.5, jnp.float32)
    te = jax.random.normal(jax.random.key(1), (batch, TEXT_LEN, m.text_dim))
    tm = jnp.ones((batch, TEXT_LEN), bool)
    extra = {}
    if m.kind == "efficient_unet":
        extra = {"lowres": jnp.zeros_like(x), "aug_level": jnp.zeros((batch,), jnp.float32)}
    params = model.init(jax.random.key(0), x, t, te, tm, **extra)["params"]
    cond = {"text_emb": te, "text_mask": tm, **extra}
    return model, params, cond, s


def _overhead(sampler: str, steps: int, thresholding: str | None = "dynamic") -> Result:
    model, params, cond, s = _init("tiny_base", BATCH)
    schedule = discretize(cosine_log_snr, 1000)
    fn = Partial(UNetModelFn(model.apply), params)
    shape = (BATCH, s, s, 3)
    x = jax.random.normal(jax.random.key(2), shape)
    t = jnp.full((BATCH,), 0.5, jnp.float32)
    call = jax.jit(lambda p, x, t, c: UNetModelFn(model.apply)(p, x, t, c))
    one = measure(lambda: block(call(params, x, t, cond)))
    sample = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(cond=cond, num_steps=steps, thresholding=thresholding)
    full = measure(lambda: block(sample(fn, schedule, shape, jax.random.key(3), **kw)))
    ratio = full.median / (steps * one.median)
    return Result(
        name=f"{sampler}_overhead_tiny_unet_b{BATCH}_{steps}steps_{thresholding or 'nothreshold'}",
        metric="time(N-step sampling) / (N x time(denoiser call))",
        value=ratio,
        unit="x",
        peer="N x one jitted denoiser call",
        peer_value=steps * one.median,
        ratio=ratio,
        target=1.05,
        lower_is_better=True,
        timing=full,
        peer_timing=one,
        notes=f"tiny_base U-Net {s}x{s}, thresholding {thresholding}, no guidance",
    )


def _cascade(steps: int, batch: int) -> Result:
    base, base_params, cond, s0 = _init("tiny_base", batch)
    sr, sr_params, _, s1 = _init("tiny_sr", batch)
    text = {"text_emb": cond["text_emb"], "text_mask": cond["text_mask"]}
    stages = [
        CascadeStage(
            model_fn=UNetModelFn(base.apply),
            params=base_params,
            schedule="cosine",
            resolution=s0,
            guidance_scale=1.25,
            num_steps=steps,
        ),
        CascadeStage(
            model_fn=UNetModelFn(sr.apply),
            params=sr_params,
            schedule="cosine",
            resolution=s1,
            log_var_mix=0.1,
            num_steps=steps,
        ),
    ]
    timing = measure(lambda: block(cascade_sample(stages, jax.random.key(0), cond=text)))
    return Result(
        name=f"demo_cascade_{s0}to{s1}_b{batch}_{steps}steps",
        metric="images/s",
        value=batch / timing.median,
        unit="images/s",
        timing=timing,
        notes=f"tiny_base (w=1.25) -> tiny_sr (v=0.1), DDPM {steps} steps per stage",
    )


def run(quick: bool) -> list[Result]:
    steps = 10 if quick else 50
    return [
        _overhead("ddpm", steps),
        _overhead("ddim", steps),
        _overhead("ddim", steps, thresholding=None),
        _cascade(steps, 16 if quick else BATCH),
    ]


if __name__ == "__main__":
    for r in run(quick=True):
        print(r.name, r.value, r.unit, r.ratio, r.met)
