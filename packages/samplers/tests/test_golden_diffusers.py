"""Per-step agreement with diffusers' DDPMScheduler / DDIMScheduler (golden fixture).

The fixture is written by tools/fixtures/make_samplers_diffusers.py, which runs diffusers'
schedulers in float64 with the analytic model below and stored noises.
"""

import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core.schedules import discretize, get_log_snr_fn, linear_beta_schedule
from synthaug.samplers import ddim_sample, ddpm_sample

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "samplers_diffusers.npz"
DATA = np.load(FIXTURE)
META = json.loads(str(DATA["__header__"]))
CASES = META["cases"]


def analytic_model(ac_table, prediction_type):
    """The fixture's model: the exact denoiser of N(0, 0.5**2) data plus a perturbation."""
    table = jnp.asarray(ac_table, jnp.float32)

    def model_fn(x, t, cond):
        del cond
        idx = jnp.round(t * 1000).astype(jnp.int32) - 1
        shape = (-1,) + (1,) * (x.ndim - 1)
        ac = table[idx].reshape(shape)
        t = t.reshape(shape)
        a, s = jnp.sqrt(ac), jnp.sqrt(1.0 - ac)
        d = a * a / 4 + s * s
        p = (
            0.1 * jnp.tanh(x) * jnp.cos(2 * t)
            + 0.05 * jnp.sin(3 * x + t)
            + 0.05 * jnp.mean(x, axis=1, keepdims=True)
        )
        if prediction_type == "eps":
            return s * x / d + a * p
        if prediction_type == "x0":
            return a * x / (4 * d) + p
        return 0.75 * a * s * x / d + p

    return model_fn


def _schedule(name):
    if name == "linear":
        return linear_beta_schedule(1000)
    return discretize(get_log_snr_fn("cosine"), 1000)


def _thresholding(spec):
    if spec is None:
        return None, 99.5
    if spec == "static":
        return "static", 99.5
    return "dynamic", float(spec[len("dynamic") :])


def test_fixture_records_its_origin():
    assert META["script"] == "tools/fixtures/make_samplers_diffusers.py"
    assert "diffusers" in META and len(CASES) == 8


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_diffusers_per_step(case):
    name = case["name"]
    schedule = _schedule(case["schedule"])
    # The fixture computed its schedule independently; both must agree.
    np.testing.assert_allclose(
        schedule.alphas_cumprod, DATA[f"{name}/alphas_cumprod"], rtol=1e-9, atol=0
    )
    thresholding, percentile = _thresholding(case["thresholding"])
    kept = DATA[f"{name}/kept_steps"]
    noise = DATA[f"{name}/noise"]
    kwargs = dict(
        cond={},
        prediction_type=case["prediction_type"],
        thresholding=thresholding,
        threshold_percentile=percentile,
        num_steps=[int(k) for k in kept],
        noise=noise,
        return_trajectory=True,
    )
    shape = tuple(META["shape"])
    model_fn = analytic_model(schedule.alphas_cumprod, case["prediction_type"])
    if case["sampler"] == "ddpm":
        v = case["variance_or_eta"]
        mix = {"fixed_small": 0.0, "fixed_large": 1.0}.get(v, v)
        out, traj = ddpm_sample(model_fn, schedule, shape, None, log_var_mix=mix, **kwargs)
    else:
        out, traj = ddim_sample(
            model_fn, schedule, shape, None, eta=case["variance_or_eta"], **kwargs
        )
    ref_x, ref_x0 = DATA[f"{name}/x"], DATA[f"{name}/x0"]
    assert traj.x.shape == ref_x.shape
    # The sampler state agrees to 1e-5 at every step.
    np.testing.assert_allclose(np.asarray(traj.x), ref_x, atol=1e-5, rtol=0)
    # The clean-sample prediction too, except that from an eps prediction at the noisiest
    # steps, x0 = (x - sigma eps) / alpha amplifies float32 rounding by 1 / alpha.
    alpha = np.sqrt(schedule.alphas_cumprod[kept][::-1])
    atol = 1e-5 * np.maximum(1.0, 0.05 / alpha).reshape((-1,) + (1,) * len(shape))
    err = np.abs(np.asarray(traj.x0) - ref_x0)
    assert np.all(err <= atol), (
        f"x0 off by {err.max()} (step {np.argmax(err.max(axis=(1, 2, 3, 4)))})"
    )
    assert float(np.abs(np.asarray(traj.x0) - ref_x0)[alpha >= 0.05].max()) <= 1e-5
    np.testing.assert_array_equal(np.asarray(out), np.asarray(traj.x[-1]))
    # The trajectory really moves: the output is far from the initial noise.
    assert math.sqrt(float(np.mean((ref_x[-1] - noise[0]) ** 2))) > 0.2
