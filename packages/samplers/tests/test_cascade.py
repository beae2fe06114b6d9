"""The cascade: stage wiring, conditioning, noise augmentation and the paper's settings."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core.diffusion import augment_lowres, q_sample, upsample_lowres
from synthaug.diffusion_core.schedules import alpha_sigma, cosine_log_snr, linear_beta_schedule
from synthaug.samplers import (
    CascadeStage,
    UNetModelFn,
    cascade_sample,
    paper_cascade_settings,
)

B = 2
TEXT = {
    "text_emb": jax.random.normal(jax.random.key(0), (B, 3, 4)),
    "text_mask": jnp.ones((B, 3), bool),
}


def base_x0_model(x, t, cond):
    """Predicts a constant clean image per sample from the text (0 when the text is dropped)."""
    v = 0.3 * jnp.tanh(jnp.sum(cond["text_emb"] * cond["text_mask"][..., None], axis=(1, 2)))
    return jnp.broadcast_to(v.reshape(-1, 1, 1, 1), x.shape)


def sr_x0_apply(variables, x, t, text_emb, text_mask, lowres=None, aug_level=None):
    """U-Net-style signature: predicts the low-resolution input as the clean image."""
    assert lowres is not None and aug_level is not None and aug_level.shape == (x.shape[0],)
    return variables["params"]["scale"] * lowres


def _stages(aug=0.0, thresholding="dynamic"):
    return [
        CascadeStage(
            model_fn=base_x0_model,
            schedule="cosine",
            resolution=4,
            guidance_scale=1.25,
            num_steps=6,
            prediction_type="x0",
        ),
        CascadeStage(
            model_fn=UNetModelFn(sr_x0_apply),
            params={"scale": jnp.float32(1.0)},
            schedule="cosine",
            resolution=8,
            log_var_mix=0.1,
            num_steps=5,
            prediction_type="x0",
        ),
        CascadeStage(
            model_fn=UNetModelFn(sr_x0_apply),
            params={"scale": jnp.float32(1.0)},
            schedule=linear_beta_schedule(1000),
            resolution=16,
            sampler="ddim",
            num_steps=4,
            aug_level=aug,
            prediction_type="x0",
            thresholding=thresholding,
        ),
    ]


def test_cascade_wires_stages_and_conditioning():
    outs = cascade_sample(_stages(), jax.random.key(1), cond=TEXT)
    assert [o.shape for o in outs] == [(B, 4, 4, 3), (B, 8, 8, 3), (B, 16, 16, 3)]
    # Base: guided x0 = w * c + (1 - w) * 0 for the x0 model, thresholding leaves it alone.
    c = 0.3 * np.tanh(np.asarray(TEXT["text_emb"]).sum(axis=(1, 2)))
    np.testing.assert_allclose(
        outs[0], np.broadcast_to(1.25 * c[:, None, None, None], outs[0].shape), atol=1e-5
    )
    # SR stages reproduce their (upsampled) conditioning: aug level 0 adds ~4.5e-5 noise.
    np.testing.assert_allclose(outs[1], upsample_lowres(outs[0], size=8), atol=5e-4)
    np.testing.assert_allclose(outs[2], upsample_lowres(outs[1], size=16), atol=5e-4)
    again = cascade_sample(_stages(), jax.random.key(1), cond=TEXT)
    for a, b in zip(outs, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cascade_noise_augmentation_level():
    outs = cascade_sample(_stages(aug=0.5, thresholding=None), jax.random.key(2), cond=TEXT)
    # Stage 2 predicts its conditioning: the stage-1 output noised at level 0.5 (at 8x8, with
    # the documented key), then upsampled.
    # The augmentation is diffusion-core's training-time one, with the same noise.
    key_aug = jax.random.split(jax.random.fold_in(jax.random.key(2), 2))[0]
    level = jnp.full((B,), 0.5)
    up = augment_lowres(outs[1], rng=key_aug, aug_level=level, out_size=16)
    np.testing.assert_allclose(outs[2], up, atol=1e-5)
    noise = jax.random.normal(key_aug, outs[1].shape)
    noisy = q_sample(x=outs[1], eps=noise, log_snr=cosine_log_snr(level))
    np.testing.assert_allclose(outs[2], upsample_lowres(noisy, size=16), atol=1e-5)
    alpha, sigma = alpha_sigma(cosine_log_snr(jnp.float32(0.5)))
    resid = (np.asarray(noisy) - float(alpha) * np.asarray(outs[1])) / float(sigma)
    assert abs(resid.std() - 1.0) < 0.1


def test_cascade_conditions_an_if_stage_in_its_order():
    """A stage with DeepFloyd IF-II's settings (its preset's aug_order, aug_schedule and
    resize_method) gets diffusion-core's resize-then-noise input, the one training uses."""
    from synthaug.diffusion_core import condition_lowres, discrete_schedule, resize_align_corners

    stages = _stages(thresholding=None)
    stages[2] = dataclasses.replace(
        stages[2],
        aug_level=0.25,
        aug_order="resize_then_noise",
        aug_schedule="nichol_cosine",
        upsample_method="bilinear_align_corners",
    )
    outs = cascade_sample(stages, jax.random.key(3), cond=TEXT)
    key_aug = jax.random.split(jax.random.fold_in(jax.random.key(3), 2))[0]
    cond = condition_lowres(
        outs[1],
        rng=key_aug,
        aug_level=0.25,
        out_size=16,
        order="resize_then_noise",
        aug_schedule="nichol_cosine",
        resize_method="bilinear_align_corners",
    )
    np.testing.assert_allclose(outs[2], cond, atol=1e-5)
    # resized first (align corners), then noised at step 250 of the discrete cosine schedule
    ac = float(discrete_schedule("nichol_cosine").alphas_cumprod[250])
    noise = jax.random.normal(key_aug, (B, 16, 16, 3))
    want = ac**0.5 * resize_align_corners(outs[1], 16) + (1 - ac) ** 0.5 * noise
    np.testing.assert_allclose(outs[2], want, atol=1e-5)


def test_cascade_stage_rejects_an_unknown_order():
    with pytest.raises(ValueError, match="aug_order must be one of"):
        CascadeStage(model_fn=base_x0_model, schedule="cosine", resolution=4, aug_order="x")


def test_paper_settings_are_the_final_table():
    base, sr256, sr1024 = paper_cascade_settings()
    assert (
        base["resolution"],
        base["guidance_scale"],
        base["log_var_mix"],
        base["sampler"],
        base["num_steps"],
    ) == (64, 1.25, 0.0, "ddpm", 1000)
    assert (
        sr256["resolution"],
        sr256["guidance_scale"],
        sr256["log_var_mix"],
        sr256["sampler"],
        sr256["num_steps"],
        sr256["aug_level"],
    ) == (256, 1.0, 0.1, "ddpm", 1000, 0.0)
    assert (
        sr1024["resolution"],
        sr1024["guidance_scale"],
        sr1024["sampler"],
        sr1024["num_steps"],
    ) == (1024, 1.0, "ddim", 32)
    assert set(sr1024["unverified"]) == {"sampler", "num_steps", "log_var_mix"}
    assert base.get("unverified", ()) == () and sr256.get("unverified", ()) == ()
    assert all(
        s["thresholding"] == "dynamic" and s["threshold_percentile"] == 99.5
        for s in (base, sr256, sr1024)
    )
    stages = [CascadeStage(model_fn=base_x0_model, **s) for s in (base, sr256, sr1024)]
    assert stages[2].discrete_schedule().num_steps == 1000


def test_stage_validation():
    with pytest.raises(ValueError, match="sampler"):
        CascadeStage(model_fn=base_x0_model, schedule="cosine", resolution=4, sampler="euler")
    with pytest.raises(ValueError, match="aug_level"):
        CascadeStage(model_fn=base_x0_model, schedule="cosine", resolution=4, aug_level=2.0)
    with pytest.raises(ValueError, match="noise schedule"):
        CascadeStage(model_fn=base_x0_model, schedule="cosinus", resolution=4).discrete_schedule()
    with pytest.raises(ValueError, match="at least one"):
        cascade_sample([], jax.random.key(0), cond=TEXT)
