"""One learned-range DDPM step equals diffusers' DDPMScheduler and guided-diffusion's
GaussianDiffusion on the pretrained models' schedules (fixture:
tools/fixtures/make_pretrained_sampling.py), through ``ddpm_sample`` itself."""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from synthaug import diffusion_core as dc
from synthaug import samplers

REF = np.load(pathlib.Path(__file__).parent / "fixtures" / "pretrained_step.npz")


def _constant_model(out, x, t, cond):
    del x, t, cond
    return out


@pytest.mark.parametrize("schedule", ["nichol_cosine", "ddpm_linear"])
@pytest.mark.parametrize("step", [999, 500, 37, 0])
def test_learned_range_step_matches_references(schedule, step):
    key = f"{schedule}/{step}"
    x, out, noise = REF[f"{key}/x"], REF[f"{key}/out"], REF[f"{key}/noise"]
    sched = dc.discrete_schedule(schedule, 1000)
    # Kept steps [step - 1, step]: the first sampling step is step `step` of the full schedule
    # (same alpha_bar and alpha_bar_prev); for step 0 a single kept step is exactly step 0.
    kept = [step] if step == 0 else [step - 1, step]
    draws = np.stack([x, noise] + [np.zeros_like(x)] * (len(kept) - 1))
    _, traj = samplers.ddpm_sample(
        Partial(_constant_model, out),
        sched,
        x.shape,
        None,
        variance="learned_range",
        thresholding="static",
        num_steps=kept,
        noise=draws,
        return_trajectory=True,
    )
    got = np.asarray(traj.x[0])
    for ref in ("diffusers", "guided"):
        want = REF[f"{key}/{ref}"]
        np.testing.assert_allclose(
            got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=ref
        )


def test_learned_range_needs_doubled_channels():
    with pytest.raises(ValueError, match="expected"):
        samplers.ddpm_sample(
            Partial(_constant_model, np.zeros((1, 4, 4, 3), np.float32)),
            dc.discrete_schedule("nichol_cosine", 10),
            (1, 4, 4, 3),
            None,
            variance="learned_range",
            noise=np.zeros((11, 1, 4, 4, 3), np.float32),
        )
    with pytest.raises(ValueError, match="variance must be one of"):
        samplers.ddpm_sample(
            Partial(_constant_model, np.zeros((1, 4, 4, 3), np.float32)),
            dc.discrete_schedule("nichol_cosine", 10),
            (1, 4, 4, 3),
            None,
            variance="learned",
        )


def test_guidance_guides_prediction_and_keeps_conditional_variance():
    # cond text 1 -> eps 1, v 0.5; null text (the given null embedding, 3) -> eps 3, v -0.5.
    def model(x, t, cond):
        e = cond["text_emb"][:, 0, 0][:, None, None, None]
        eps = jnp.broadcast_to(e, x.shape)
        v = jnp.broadcast_to(jnp.where(e < 2, 0.5, -0.5), x.shape)
        return jnp.concatenate([eps, v], axis=-1)

    cond = {
        "text_emb": np.ones((2, 1, 1), np.float32),
        "text_mask": np.ones((2, 1), bool),
        "null_text_emb": np.full((2, 1, 1), 3.0, np.float32),
    }
    x = np.zeros((2, 2, 2, 3), np.float32)
    out = samplers.guided_prediction(
        model, x, np.ones(2, np.float32), cond, guidance_scale=2.0, guided_channels=3
    )
    np.testing.assert_allclose(out[..., :3], 2 * 1 - 1 * 3)
    np.testing.assert_allclose(out[..., 3:], 0.5)
