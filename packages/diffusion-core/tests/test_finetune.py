import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusion_core_testutil import make_batch, micro_sr, random_params

from synthaug.diffusion_core import (
    create_train_state,
    init_from_pretrained,
    make_model,
    make_train_step,
    merge_params,
)


def test_merge_reports_missing_and_unexpected():
    init = {"a": {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, "c": {"w": jnp.zeros(3)}}
    pre = {"a": {"w": jnp.ones((2, 2))}, "old": {"w": jnp.ones(1)}}
    merged, report = merge_params(init, pre)
    np.testing.assert_array_equal(merged["a"]["w"], 1.0)
    np.testing.assert_array_equal(merged["c"]["w"], 0.0)
    assert report.loaded == ["a/w"]
    assert report.missing == ["a/b", "c/w"]
    assert report.unexpected == ["old/w"]
    with pytest.raises(ValueError, match="old/w"):
        merge_params(init, pre, strict=True)


def test_shape_mismatch_names_the_parameter():
    init = {"a": {"w": jnp.zeros((2, 2))}}
    with pytest.raises(ValueError, match=r"a/w.*\(3, 2\).*\(2, 2\)"):
        merge_params(init, {"a": {"w": jnp.ones((3, 2))}})


def test_init_from_pretrained_and_freezing():
    cfg = micro_sr()
    cfg.train.freeze = ("^text/", "^down_0_res_0/")
    model = make_model(cfg)
    batch = make_batch(cfg, 2)
    fresh = create_train_state(jax.random.key(9), model, cfg, batch)
    # A subset checkpoint: other parameters of the same network, without the output conv.
    trained = random_params(cfg, seed=3)
    pretrained = {k: v for k, v in trained.items() if k != "conv_out"}
    pretrained["legacy_head"] = {"kernel": jnp.ones((2, 2))}
    state, report = init_from_pretrained(fresh, pretrained, cfg)
    assert report.missing == ["conv_out/bias", "conv_out/kernel"]
    assert report.unexpected == ["legacy_head/kernel"]
    np.testing.assert_array_equal(state.params["conv_in"]["kernel"], trained["conv_in"]["kernel"])
    step = make_train_step(model, cfg)
    new = state
    for i in range(2):
        new, m = step(new, batch, jax.random.key(i))
        assert bool(m["finite"])
    for name in ("text", "down_0_res_0"):
        for a, b in zip(
            jax.tree.leaves(state.params[name]), jax.tree.leaves(new.params[name]), strict=True
        ):
            assert bool(jnp.array_equal(a, b)), name
        for a, b in zip(
            jax.tree.leaves(state.ema_params[name]),
            jax.tree.leaves(new.ema_params[name]),
            strict=True,
        ):
            assert bool(jnp.array_equal(a, b)), name
    # The output conv is zero-initialised, so it is the first layer to receive a gradient:
    # the trainable parameters move.
    changed = [
        not bool(jnp.array_equal(a, b))
        for a, b in zip(
            jax.tree.leaves(state.params["conv_out"]),
            jax.tree.leaves(new.params["conv_out"]),
            strict=True,
        )
    ]
    assert any(changed)
