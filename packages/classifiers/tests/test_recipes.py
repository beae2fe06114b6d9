"""Recipes: the paper's hyper-parameters, lr scaling with batch, schedule and decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.classifiers import (
    deit_recipe,
    get_model,
    init_shapes,
    learning_rate_schedule,
    make_optimizer,
    peak_learning_rate,
    resnet_recipe,
    weight_decay_mask,
)


def test_resnet_recipe_values():
    c = resnet_recipe()
    assert (c.batch_size, c.epochs, c.optimizer, c.momentum, c.nesterov) == (
        1024,
        90,
        "sgd",
        0.9,
        True,
    )
    assert c.weight_decay == 1e-4 and c.warmup_epochs == 5 and c.schedule == "cosine"
    assert peak_learning_rate(c) == pytest.approx(0.4)
    assert peak_learning_rate(resnet_recipe(256)) == pytest.approx(0.1)
    assert resnet_recipe(label_smoothing=0.1).label_smoothing == 0.1
    with pytest.raises(AttributeError):
        c.not_a_key = 1  # locked: unknown keys are an error


def test_deit_recipe_values_and_lr_scaling():
    c = deit_recipe(512)
    assert c.optimizer == "adamw" and c.epochs == 300 and c.weight_decay == 0.05
    assert peak_learning_rate(c) == pytest.approx(5e-4)
    assert peak_learning_rate(deit_recipe(1024)) == pytest.approx(1e-3)
    assert c.mixup_alpha == 0.8 and c.cutmix_alpha == 1.0 and c.randaugment.num_layers == 2
    assert c.model_kwargs.drop_path_rate == 0.1 and c.label_smoothing == 0.1
    c.batch_size = 2048  # overriding the batch rescales the lr
    assert peak_learning_rate(c) == pytest.approx(2e-3)


def test_schedule_warmup_then_cosine():
    c = resnet_recipe(256, 10)
    spe = 100
    sched = learning_rate_schedule(c, spe)
    assert float(sched(0)) == 0.0
    assert float(sched(250)) == pytest.approx(0.05)  # half-way through 5 warmup epochs
    assert float(sched(500)) == pytest.approx(0.1)
    assert float(sched(750)) == pytest.approx(0.05, rel=1e-4)  # cosine mid-point
    assert float(sched(1000)) == pytest.approx(0.0, abs=1e-7)
    step = resnet_recipe(256, 90, schedule="step")
    s = learning_rate_schedule(step, 10)
    assert [float(s(e * 10)) for e in (10, 35, 65, 85)] == pytest.approx([0.1, 0.01, 0.001, 0.0001])


def _hand_written_schedule(kind, peak, warmup, total, min_lr, boundaries, step):
    """The schedule of synthaug-classifiers 0.1 (written out by hand), in float64."""
    step = np.asarray(step, np.float64)
    warm = peak * step / max(warmup, 1)
    if kind == "cosine":
        progress = np.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
        after = min_lr + (peak - min_lr) * 0.5 * (1.0 + np.cos(np.pi * progress))
    elif kind == "step":
        after = peak * 0.1 ** np.sum(step[..., None] >= np.asarray(boundaries), -1)
    else:
        after = np.full_like(step, peak)
    return np.where(step < warmup, warm, after)


@pytest.mark.parametrize(
    "kind, warmup_epochs, min_lr",
    [
        ("cosine", 5.0, 0.0),
        ("cosine", 0.0, 1e-3),
        ("cosine", 2.5, 1e-5),
        ("step", 5.0, 0.0),
        ("step", 0.0, 0.0),
        ("constant", 3.0, 0.0),
        ("constant", 0.0, 0.0),
    ],
)
def test_optax_schedule_equals_the_hand_written_one(kind, warmup_epochs, min_lr):
    c = resnet_recipe(512, 90, schedule="cosine" if kind == "constant" else kind)
    c.schedule, c.warmup_epochs, c.min_lr = kind, warmup_epochs, min_lr
    spe = 7
    sched = jax.jit(learning_rate_schedule(c, spe))
    steps = np.arange(0, 90 * spe + 20)
    got = np.asarray([sched(s) for s in steps[::3]] + [sched(s) for s in (34, 35, 36, 629, 630)])
    ref_steps = np.concatenate([steps[::3], [34, 35, 36, 629, 630]])
    ref = _hand_written_schedule(
        kind,
        peak_learning_rate(c),
        int(round(warmup_epochs * spe)),
        90 * spe,
        min_lr,
        [b * spe for b in c.step_boundaries],
        ref_steps,
    )
    # float32 against float64: relative 2e-6, and 1e-6 of the peak near the cosine's end.
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6 * peak_learning_rate(c))


def test_weight_decay_skips_batchnorm_biases_and_tokens():
    params = init_shapes(get_model("resnet18"))["params"]
    mask = weight_decay_mask(params)
    assert mask["conv1"]["kernel"] and mask["fc"]["kernel"]
    assert not mask["bn1"]["scale"] and not mask["bn1"]["bias"] and not mask["fc"]["bias"]
    vit = init_shapes(get_model("vit_ti16_224"))["params"]
    vmask = weight_decay_mask(vit)
    assert vmask["blocks_0"]["attn"]["qkv"]["kernel"]
    assert not vmask["pos_embed"] and not vmask["cls_token"] and not vmask["norm"]["scale"]


def test_sgd_weight_decay_acts_on_kernels_only():
    c = resnet_recipe(256, 10)
    c.warmup_epochs = 0.0
    tx, _ = make_optimizer(c, 10)
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2))}, "bn": {"scale": jnp.ones((2,))}}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    # Nesterov SGD: first update = -lr * (1 + momentum) * wd * w for decayed weights.
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * 1.9 * 1e-4, rtol=1e-5)
    np.testing.assert_array_equal(updates["bn"]["scale"], 0.0)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        resnet_recipe(0)
    with pytest.raises(ValueError, match="schedule"):
        resnet_recipe(schedule="linear")
    c = resnet_recipe()
    c.optimizer = "lamb"
    with pytest.raises(ValueError, match="config.optimizer"):
        make_optimizer(c, 10)


def test_vit_recipe_follows_big_vision_vit_s16():
    from synthaug.classifiers import count_params, model_from_config, vit_recipe

    c = vit_recipe()
    assert (c.batch_size, c.epochs, c.optimizer, c.base_lr, c.weight_decay) == (
        1024,
        90,
        "adamw",
        1e-3,
        1e-4,
    )
    assert c.weight_decay_scale == "schedule" and c.adam_mu_dtype == "bfloat16"
    assert c.grad_clip_norm == 1.0 and c.warmup_steps == 10_000 and c.min_lr == 0.0
    assert (c.mixup_mode, c.mixup_alpha, c.cutmix_alpha, c.label_smoothing) == (
        "big_vision",
        0.2,
        0.0,
        0.0,
    )
    assert (c.randaugment.num_layers, c.randaugment.magnitude, c.randaugment.magnitude_std) == (
        2,
        10.0,
        0.0,
    )
    assert tuple(c.mean) == tuple(c.std) == (0.5, 0.5, 0.5)  # big_vision's value_range(-1, 1)
    assert peak_learning_rate(c) == pytest.approx(1e-3)
    params = init_shapes(model_from_config(c))["params"]
    # ViT-S/16 without class token and learned position embedding, with a 384-wide
    # pre-logits layer: 22,050,664 - 384 - 197 * 384 + 384 * 384 + 384.
    assert count_params(params) == 22_122_472
    assert "cls_token" not in params and "pos_embed" not in params and "pre_logits" in params
    sched = learning_rate_schedule(c, 1251)
    assert float(sched(5_000)) == pytest.approx(5e-4, rel=1e-6)
    assert float(sched(10_000)) == pytest.approx(1e-3, rel=1e-6)


def test_big_vision_weight_decay_is_scaled_by_the_schedule_not_the_peak_lr():
    from synthaug.classifiers import vit_recipe

    c = vit_recipe(1024, 90, train_examples=1024 * 100)
    c.warmup_steps = 10
    tx, sched = make_optimizer(c, 100)
    params = {"dense": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.ones((2,))}}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = tx.init(params)
    for _ in range(5):  # zero gradients: the update is the weight decay alone
        updates, state = tx.update(zeros, state, params)
    # At step 4: lr(4) / peak = 0.4 of the warmup; decay 1e-4 x 0.4 x w, not 1e-3 x 1e-4 x w.
    np.testing.assert_allclose(updates["dense"]["kernel"], -1e-4 * 0.4 * 2.0, rtol=1e-5)
    np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)
    assert float(sched(4)) == pytest.approx(0.4e-3)
    # optax.adamw-style decay (the DeiT recipe) is multiplied by the lr itself.
    c.weight_decay_scale = "lr"
    tx, _ = make_optimizer(c, 100)
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update(zeros, state, params)
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.4e-3 * 1e-4 * 2.0, rtol=1e-5)
