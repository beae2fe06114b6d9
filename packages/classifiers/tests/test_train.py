"""Train/eval steps: global-batch BatchNorm under data parallelism, exact sharded eval, fit."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from synthaug.classifiers import (
    create_train_state,
    evaluate,
    evaluate_batches,
    fit,
    make_train_step,
    model_from_config,
    predict_features,
    prepare_images,
    shard_batch,
)

from ._tiny import micro_config, toy_data


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() >= 4, "conftest sets 4 CPU devices"
    return Mesh(np.array(jax.devices()[:4]), ("data",))


def _first_bn_input_mean(state, cfg, images):
    """Per-channel mean of the stem conv output, computed directly."""
    x = prepare_images(jnp.asarray(images), cfg)
    conv = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    y = conv.apply({"params": state.params["conv1"]}, x)
    return np.asarray(jnp.mean(y, axis=(0, 1, 2)))


def test_batchnorm_statistics_are_global_under_data_parallelism(mesh):
    cfg = micro_config(augment="none")
    model = model_from_config(cfg)
    images, labels = toy_data(8)
    state = create_train_state(model, cfg, jax.random.PRNGKey(0))
    single = make_train_step(model, cfg)
    sharded = make_train_step(model, cfg, mesh)
    s1, m1 = single(state, {"images": images, "labels": labels})
    s4, m4 = sharded(
        jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())),
        shard_batch({"images": images, "labels": labels}, mesh),
    )
    # The batch really is split over the 4 devices.
    batch = shard_batch({"images": images, "labels": labels}, mesh)
    assert len(batch["images"].sharding.device_set) == 4
    assert batch["images"].addressable_shards[0].data.shape == (2, 8, 8, 3)
    # Running mean after one step = 0.1 * mean over the *whole* batch (momentum 0.9, init 0).
    global_mean = _first_bn_input_mean(state, cfg, images)
    local_mean = _first_bn_input_mean(state, cfg, images[:2])
    got = np.asarray(s4.batch_stats["bn1"]["mean"])
    np.testing.assert_allclose(got, 0.1 * global_mean, rtol=1e-4, atol=1e-6)
    assert np.abs(got - 0.1 * local_mean).max() > 1e-3
    # Same step on 1 device and on 4: same parameters, statistics and loss.
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        (s1.params, s1.batch_stats),
        (s4.params, s4.batch_stats),
    )
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
    assert int(s4.step) == 1


def test_eval_counts_every_example_exactly_once(mesh):
    cfg = micro_config(num_classes=7)
    model = model_from_config(cfg)
    state = create_train_state(model, cfg, jax.random.PRNGKey(1))
    images, labels = toy_data(37, seed=3, num_classes=7)  # 37 = 4 full batches of 8 + 5
    logits = np.asarray(
        model.apply(
            {"params": state.params, "batch_stats": state.batch_stats},
            prepare_images(jnp.asarray(images), cfg),
        )
    )
    top1 = np.mean(np.argmax(logits, -1) == labels)
    top5 = np.mean(np.any(np.argsort(-logits, -1)[:, :5] == labels[:, None], -1))
    assert top1 < top5 < 1.0
    loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    sharded = evaluate(cfg, state, images, labels, batch_size=8, mesh=mesh)
    single = evaluate(cfg, state, images, labels, batch_size=5)
    # A stream of uneven batches (one empty), re-cut into the global batch.
    cuts = [0, 10, 11, 11, 30, 37]
    stream = [{"images": images[a:b], "labels": labels[a:b]} for a, b in itertools.pairwise(cuts)]
    streamed = evaluate_batches(cfg, state, iter(stream), batch_size=8, mesh=mesh)
    streamed1 = evaluate_batches(cfg, state, iter(stream), batch_size=5)
    for res in (sharded, single, streamed, streamed1):
        assert res["count"] == 37
        assert res["top1"] == pytest.approx(top1, abs=1e-9)
        assert res["top5"] == pytest.approx(top5, abs=1e-9)
        assert res["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_fit_learns_and_features_have_the_penultimate_width():
    cfg = micro_config(epochs=4)
    images, labels = toy_data(64, seed=0)
    ev_images, ev_labels = toy_data(20, seed=1)
    state, history = fit(
        cfg,
        images,
        labels,
        rng=jax.random.PRNGKey(0),
        eval_images=ev_images,
        eval_labels=ev_labels,
    )
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["step"] == 4 * 8 == int(state.step)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["eval_count"] == 20
    assert history[-1]["eval_top1"] >= 0.75  # chance is 0.25
    feats = predict_features(cfg, state, ev_images[:11], batch_size=8)
    assert feats.shape == (11, 8) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std() > 0


def test_fit_rejects_bad_inputs():
    cfg = micro_config()
    images, labels = toy_data(16)
    with pytest.raises(ValueError, match=r"train_images must be \[N, H, W, 3\]"):
        fit(cfg, images[..., 0], labels, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="train_labels must be in"):
        fit(cfg, images, labels + 4, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(cfg, images[:4], labels[:4], rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="train_labels must be"):
        fit(cfg, images, labels[:3], rng=jax.random.PRNGKey(0))


def _global_relative_error(a, b) -> float:
    """``|a - b| / |a|`` over every leaf of two pytrees together."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    num = sum(
        float(np.sum((np.asarray(x) - np.asarray(y)) ** 2)) for x, y in zip(la, lb, strict=True)
    )
    return (num / sum(float(np.sum(np.asarray(x) ** 2)) for x in la)) ** 0.5


def test_fit_on_four_devices_equals_one_device(mesh):
    cfg = micro_config(epochs=1)
    images, labels = toy_data(64, seed=0)
    ev_images, ev_labels = toy_data(37, seed=5)  # 37 = 4 batches of 8 + 5: padding on the mesh
    kw = dict(rng=jax.random.key(3), eval_images=ev_images, eval_labels=ev_labels)
    s1, h1 = fit(cfg, images, labels, **kw)
    s4, h4 = fit(cfg, images, labels, mesh=mesh, **kw)
    assert s4.params["conv1"]["kernel"].sharding.is_fully_replicated
    assert len(s4.params["conv1"]["kernel"].sharding.device_set) == 4
    for a, b in zip(h1, h4, strict=True):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
        assert b["eval_count"] == a["eval_count"] == 37
        # Exact counts: the same examples right on one device and on four.
        assert round(b["eval_top1"] * 37) == round(a["eval_top1"] * 37)
        assert round(b["eval_top5"] * 37) == round(a["eval_top5"] * 37)
    # Summation order differs between the programs (float32 rounding), nothing else.
    assert _global_relative_error((s1.params, s1.batch_stats), (s4.params, s4.batch_stats)) < 1e-5


def test_evaluate_rejects_out_of_range_labels():
    cfg = micro_config()
    state = create_train_state(model_from_config(cfg), cfg, jax.random.key(0))
    images, labels = toy_data(10)
    with pytest.raises(ValueError, match=r"eval_labels must be in \[0, 4\).*got range \[0, 4\]"):
        evaluate(cfg, state, images, np.where(np.arange(10) == 3, 4, labels))
    with pytest.raises(ValueError, match=r"eval_labels must be in \[0, 4\).*\[-1, "):
        evaluate(cfg, state, images, np.where(np.arange(10) == 3, -1, labels))
    # In a stream the labels are checked on the device: the count of bad ones is reported.
    bad = [{"images": images, "labels": np.where(np.arange(10) == 3, 9, labels)}]
    with pytest.raises(ValueError, match=r"1 of 10 examples are outside \[0, config.num_classes\)"):
        evaluate_batches(cfg, state, bad)
    with pytest.raises(ValueError, match=r"my_batches: each batch must be a dict"):
        evaluate_batches(cfg, state, [(images, labels)], name="my_batches")


def test_bfloat16_compute_lowers_to_bf16_convs_and_dots_with_f32_state():
    import re

    images, labels = toy_data(8)
    batch = {"images": images, "labels": labels}
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = micro_config(dtype=dtype)
        model = model_from_config(cfg)
        state = create_train_state(model, cfg, jax.random.key(0))
        step = make_train_step(model, cfg)
        hlo = jax.jit(step).lower(state, batch).as_text()
        # The operand types of every convolution and matrix product (forward and backward;
        # some accumulate into float32 outputs).
        operands = r": \(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\)"
        convs = re.findall(r"stablehlo.convolution.*?" + operands, hlo)
        dots = re.findall(r"stablehlo.dot_general.*?" + operands, hlo)
        assert len(convs) >= 10 and len(dots) >= 3, (len(convs), len(dots))
        want = "bf16" if dtype == "bfloat16" else "f32"
        assert {t for pair in convs + dots for t in pair} == {want}, (convs, dots)
        new, metrics = step(state, batch)
        # Parameters, optimiser state and the loss stay float32.
        leaves = jax.tree_util.tree_leaves((new.params, new.opt_state, new.batch_stats))
        assert {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {
            jnp.dtype("float32")
        }
        assert metrics["loss"].dtype == jnp.float32
        losses[dtype] = float(metrics["loss"])
    # The stated tolerance: bf16 activations move the tiny model's loss by < 2%.
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=2e-2)
