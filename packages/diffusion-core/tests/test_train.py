import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from diffusion_core_testutil import resume_setup
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.diffusion_core import (
    ema_update,
    get_preset,
    learning_rate_schedule,
    make_optimizer,
    train,
)


def _equal(a, b) -> bool:
    return all(
        bool(jnp.array_equal(x, y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_train_step_learns_and_updates_ema(micro):
    s = micro
    state0 = s.state
    probe = jax.random.key(123)
    _, m0 = s.step(state0, s.batch, probe)
    state = state0
    for i in range(60):
        new, metrics = s.step(state, s.batch, jax.random.key(i))
        if i == 0:
            assert int(new.step) == 1 and float(metrics["learning_rate"]) == 0.0
            # One EMA update from the initial (equal) EMA.
            decay = s.config.train.ema_decay
            expect = ema_update(state.ema_params, new.params, decay=decay)
            for a, b in zip(jax.tree.leaves(expect), jax.tree.leaves(new.ema_params), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert bool(metrics["finite"])
        state = new
    assert int(state.step) == 60
    _, m1 = s.step(state, s.batch, probe)
    # Same noise, same t: the loss of the trained parameters is clearly lower.
    assert float(m1["loss"]) < 0.85 * float(m0["loss"])
    assert not _equal(state.params, state0.params)
    assert not _equal(state.ema_params, state.params)


def test_initial_state_is_the_model_initialisation(micro):
    # create_train_state is one program (parameters, EMA, optimizer state); the parameters
    # are those of model.init on the first example of the batch.
    x = micro.batch["image"][:1]
    params = jax.jit(micro.model.init)(
        jax.random.key(0),
        x,
        jnp.zeros((1,)),
        micro.batch["text_emb"][:1],
        micro.batch["text_mask"][:1],
    )["params"]
    state = micro.state
    assert int(state.step) == 0
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert _equal(state.ema_params, state.params)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(state.opt_state))


def test_non_finite_loss_leaves_state_untouched(micro):
    s = micro
    bad = dict(s.batch, image=s.batch["image"].at[0, 0, 0, 0].set(jnp.nan))
    new, metrics = s.step(s.state, bad, jax.random.key(0))
    assert not bool(metrics["finite"])
    assert _equal(new, s.state)


def test_step_on_a_batch_sharded_over_a_mesh(micro):
    s = micro
    assert len(jax.devices()) >= 4
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    batch = jax.device_put(s.batch, NamedSharding(mesh, P("data")))
    state = jax.device_put(s.state, NamedSharding(mesh, P()))
    new_sharded, m_sharded = s.step(state, batch, jax.random.key(3))
    new, m = s.step(s.state, s.batch, jax.random.key(3))
    np.testing.assert_allclose(m_sharded["loss"], m["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new_sharded.params), jax.tree.leaves(new.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sr_train_step(micro_sr_setup):
    s = micro_sr_setup
    new, metrics = s.step(s.state, s.batch, jax.random.key(0))
    assert bool(metrics["finite"]) and float(metrics["loss"]) > 0
    assert int(new.step) == 1
    new2, _ = s.step(new, s.batch, jax.random.key(1))
    assert not _equal(new2.params, s.state.params)


def test_optimizers_follow_the_paper():
    params = {"w": jnp.ones((8, 4)), "b": jnp.zeros((4,))}
    base = get_preset("imagen_base_64")
    sr = get_preset("imagen_sr_256")
    assert base.optimizer.name == "adafactor" and sr.optimizer.name == "adam"
    leaves_base = jax.tree.leaves(
        make_optimizer(base).init(params), is_leaf=lambda x: isinstance(x, optax.FactoredState)
    )
    assert any(isinstance(x, optax.FactoredState) for x in leaves_base)
    leaves_sr = jax.tree.leaves(
        make_optimizer(sr).init(params), is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)
    )
    assert any(isinstance(x, optax.ScaleByAdamState) for x in leaves_sr)
    assert base.train.ema_decay == 0.9999


def test_learning_rate_warmup_then_cosine():
    cfg = get_preset("imagen_sr_256")
    lr = learning_rate_schedule(cfg)
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(float(lr(5_000)), 0.5e-4, rtol=1e-5)
    np.testing.assert_allclose(float(lr(10_000)), 1e-4, rtol=1e-5)
    mid = 10_000 + (490_000 - 10_000) // 2
    np.testing.assert_allclose(float(lr(mid)), 0.5e-4, rtol=1e-3)
    assert float(lr(490_000)) == pytest.approx(0.0, abs=1e-12)


def test_gradient_clipping():
    cfg = get_preset("tiny_base")
    cfg.optimizer.grad_clip = 0.5
    cfg.optimizer.name = "adafactor"
    tx = make_optimizer(cfg)
    params = {"w": jnp.ones((4, 4))}
    # Compare the first update for a huge and a clipped-size gradient: same after clipping.
    st = tx.init(params)
    big = {"w": jnp.full((4, 4), 100.0)}
    small = {"w": jnp.full((4, 4), 0.5 / 4.0)}  # global norm exactly 0.5
    u_big, _ = tx.update(big, st, params)
    u_small, _ = tx.update(small, st, params)
    np.testing.assert_allclose(u_big["w"], u_small["w"], rtol=1e-5)
    with pytest.raises(ValueError, match="optimizer.name"):
        cfg.optimizer.name = "sgd"
        make_optimizer(cfg)


def test_flattened_adam_is_the_per_array_update():
    cfg = get_preset("tiny_base")
    cfg.optimizer.grad_clip = 0.5
    cfg.optimizer.warmup_steps = 1
    cfg.optimizer.flatten = True
    r = np.random.default_rng(0)
    params = {"a": {"w": jnp.asarray(r.normal(size=(3, 4)), jnp.float32)}, "b": jnp.zeros(5)}
    flat_tx = make_optimizer(cfg)
    cfg.optimizer.flatten = False
    tree_tx = make_optimizer(cfg)
    sf, st = flat_tx.init(params), tree_tx.init(params)
    assert len(jax.tree.leaves(sf)) < len(jax.tree.leaves(st))
    for scale in (1.0, 1.0, 0.02):  # global norms about 4, 4 (clipped to 0.5) and 0.08
        g = jax.tree.map(
            lambda p, s=scale: jnp.asarray(s * r.normal(size=p.shape), p.dtype), params
        )
        uf, sf = flat_tx.update(g, sf, params)
        ut, st = tree_tx.update(g, st, params)
        for a, b in zip(jax.tree.leaves(uf), jax.tree.leaves(ut), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # Adafactor is never flattened: it factors the second moment of each matrix.
    cfg.optimizer.flatten = True
    cfg.optimizer.name = "adafactor"
    state = make_optimizer(cfg).init(params)
    factored = [
        x
        for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.FactoredState))
        if isinstance(x, optax.FactoredState)
    ]
    assert factored and factored[0].v["a"]["w"].shape == (3, 4)  # per array, not flat


def test_train_loop_fetches_from_the_device_only_on_log_steps(monkeypatch):
    # Every device-to-host fetch (jax.device_get, or an implicit one: float(), int(),
    # np.asarray() of a device array) is recorded with the step whose batch was read last:
    # the loop fetches once before the first step (the step counter) and on the log steps
    # (after the batches of steps 4 and 9), never in between.
    from jax._src.array import ArrayImpl

    model, config, data = resume_setup()
    batches = [jax.tree.map(np.asarray, data(i)) for i in range(10)]
    current = {"step": None}

    def feed(step):
        current["step"] = step
        return batches[step]

    seen = set()
    value, device_get = ArrayImpl._value, jax.device_get
    monkeypatch.setattr(
        ArrayImpl, "_value", property(lambda a: seen.add(current["step"]) or value.fget(a))
    )
    monkeypatch.setattr(jax, "device_get", lambda x: seen.add(current["step"]) or device_get(x))
    state, history = train(model, config, feed, num_steps=10, log_every=5)
    monkeypatch.undo()
    assert [h["step"] for h in history] == [5, 10]
    assert seen == {0, 4, 9}
    assert int(state.step) == 10


def test_accumulated_gradient_is_the_full_batch_gradient_for_a_key_free_loss():
    from synthaug.diffusion_core import accumulated_value_and_grad

    x = jax.random.normal(jax.random.key(0), (8, 3))
    y = jax.random.normal(jax.random.key(1), (8,))
    params = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}

    def loss_fn(p, batch, rng):
        del rng
        err = batch["x"] @ p["w"] + p["b"] - batch["y"]
        return jnp.mean(err**2), None

    batch = {"x": x, "y": y}
    loss1, g1 = accumulated_value_and_grad(loss_fn, 1)(params, batch, jax.random.key(2))
    for steps in (2, 4, 8):
        loss, g = jax.jit(accumulated_value_and_grad(loss_fn, steps))(
            params, batch, jax.random.key(2)
        )
        np.testing.assert_allclose(loss, loss1, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g1), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # A batch split over 4 devices gives the same.
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
    loss, g = jax.jit(accumulated_value_and_grad(loss_fn, 2))(params, sharded, jax.random.key(2))
    np.testing.assert_allclose(loss, loss1, rtol=1e-6)
    np.testing.assert_allclose(g["w"], g1["w"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"grad_accum_steps=3 must divide the batch size"):
        accumulated_value_and_grad(loss_fn, 3)(params, batch, jax.random.key(2))
    with pytest.raises(ValueError, match=r"grad_accum_steps must be >= 1, got 0"):
        accumulated_value_and_grad(loss_fn, 0)


def test_accumulated_train_step_averages_its_micro_batches(micro):
    # Micro-batch i holds rows i, i + 2 and takes the key fold_in(rng, i): the step's loss is
    # the mean of the two one-micro-batch steps' losses, and the step trains.
    from diffusion_core_testutil import Setup

    cfg = micro.config.copy_and_resolve_references()
    cfg.train.grad_accum_steps = 2
    accum = Setup(cfg, 4)
    rng = jax.random.key(7)
    new, m = accum.step(micro.state, micro.batch, rng)
    halves = [
        micro.step(micro.state, jax.tree.map(lambda a, i=i: a[i::2], micro.batch), k)[1]["loss"]
        for i, k in enumerate((jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)))
    ]
    np.testing.assert_allclose(m["loss"], np.mean(halves), rtol=1e-5)
    assert bool(m["finite"]) and int(new.step) == 1 and float(m["grad_norm"]) > 0
    new2, _ = accum.step(new, micro.batch, jax.random.key(8))  # the warm-up's first lr is 0
    assert not _equal(new2.params, new.params)
