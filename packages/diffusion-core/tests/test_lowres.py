"""The low-res conditioning of super-resolution models against DeepFloyd IF-II's reference code.

The fixture (tools/fixtures/make_if_lowres_augmentation.py) records what the original
``deepfloyd_if`` ``SuperResUNetModel`` and diffusers' ``IFSuperResolutionPipeline`` feed their
U-Net: the low-res image resized, then noised at the integer augmentation step, and that step.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug import diffusion_core as dc

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "if_lowres_augmentation.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


@pytest.mark.parametrize("source", ["original/sample", "original/train", "diffusers"])
@pytest.mark.parametrize("preset", ["if_ii_l", "tiny_if_sr"])
def test_if_ii_conditioning_equals_the_reference(ref, source, preset):
    settings = dc.lowres_settings(dc.get_preset(preset))
    assert settings == {
        "order": "resize_then_noise",
        "aug_schedule": "nichol_cosine",
        "resize_method": "bilinear_align_corners",
    }
    steps = ref[f"{source}/aug_step"]
    level = jnp.asarray(steps / 1000.0, jnp.float32)
    assert np.array_equal(np.asarray(dc.aug_step(level)), steps)  # what the U-Net sees
    got = dc.condition_lowres(
        ref["lowres"],
        rng=None,
        aug_level=level,
        out_size=32,
        noise=ref[f"{source}/noise"],
        **settings,
    )
    np.testing.assert_allclose(got, ref[f"{source}/cond"], atol=1e-5, rtol=0)
    # Imagen's order (noise at the low resolution, then resize) is not what IF-II saw.
    other = dc.condition_lowres(
        ref["lowres"],
        rng=jax.random.key(0),
        aug_level=level,
        out_size=32,
        **{**settings, "order": "noise_then_resize"},
    )
    assert np.max(np.abs(np.asarray(other) - ref[f"{source}/cond"])) > 0.1


def test_if_augment_lowres_is_the_if_ii_setting(ref):
    got = dc.if_augment_lowres(
        ref["lowres"], rng=None, aug_level=0.25, out_size=32, noise=ref["diffusers/noise"]
    )
    np.testing.assert_allclose(got, ref["diffusers/cond"], atol=1e-5, rtol=0)


def test_aug_step_rounds_and_stays_on_the_table():
    levels = jnp.asarray([0.0, 0.2504, 0.25, 0.7, 0.9996, 1.0])
    assert np.asarray(dc.aug_step(levels)).tolist() == [0, 250, 250, 700, 999, 999]
    q = dc.quantize_aug_level(jnp.asarray([0.0, 0.2509, 0.9999, 1.0]))
    assert np.asarray(dc.aug_step(q)).tolist() == [0, 250, 999, 999]


def test_training_draws_if_ii_levels_on_integer_steps():
    """diffusion_loss with IF-II's order: levels on the 1000 integer steps, the low-res input
    resized (align corners) then noised; at level 0 it is the resized image plus the noise of
    step 0 (std 0.0064)."""
    seen = {}

    def apply_fn(params, z, t, text_emb, text_mask, *, lowres, aug_level, rng):
        seen.update(lowres=lowres, aug_level=aug_level)
        return jnp.zeros_like(z)

    lowres = jax.random.uniform(jax.random.key(1), (64, 4, 4, 3), minval=-1, maxval=1)
    batch = {"image": jnp.zeros((64, 8, 8, 3)), "lowres": lowres}
    common = dict(
        rng=jax.random.key(2),
        log_snr_fn=dc.get_log_snr_fn("nichol_cosine"),
        is_sr=True,
        p_uncond=0.0,
        aug_schedule="nichol_cosine",
        resize_method="bilinear_align_corners",
        aug_order="resize_then_noise",
    )
    dc.diffusion_loss(apply_fn, None, batch, **common)
    steps = np.asarray(seen["aug_level"]) * 1000
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert steps.min() >= 0 and steps.max() <= 999 and len(np.unique(np.round(steps))) > 50
    dc.diffusion_loss(apply_fn, None, batch, aug_level_range=(0.0, 0.0), **common)
    diff = np.asarray(seen["lowres"]) - np.asarray(dc.resize_align_corners(lowres, 8))
    assert 0.003 < diff.std() < 0.01


def test_presets_name_their_order():
    assert dc.lowres_settings(dc.get_preset("imagen_sr_256"))["order"] == "noise_then_resize"
    for name in ("adm_sr_256", "tiny_adm_sr"):
        cfg = dc.get_preset(name)
        assert dc.lowres_settings(cfg)["order"] == "resize_only"
        assert cfg.diffusion.aug_level_max == 0.0


def test_unknown_order_is_a_one_line_error():
    cfg = dc.get_preset("tiny_sr")
    with cfg.unlocked():
        cfg.diffusion.aug_order = "upsample_first"
    with pytest.raises(ValueError, match=r"diffusion\.aug_order must be one of"):
        dc.lowres_settings(cfg)
    with pytest.raises(ValueError, match="resize_method must be one of"):
        dc.condition_lowres(
            jnp.zeros((1, 4, 4, 3)), rng=None, aug_level=0.0, out_size=8, resize_method="area"
        )
