import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusion_core_testutil import make_batch, random_params

from synthaug.diffusion_core import (
    EfficientUNet,
    UNet,
    abstract_params,
    get_preset,
    make_model,
    param_count,
    upsample_lowres,
)


@functools.cache
def _abstract(name):
    return abstract_params(get_preset(name))


def _count(name):
    return sum(math.prod(p.shape) for p in jax.tree.leaves(_abstract(name)))


def _inputs(setup, batch=None):
    b = batch or setup.batch
    x = b["image"]
    t = jnp.linspace(0.1, 0.9, x.shape[0])
    kw = {}
    if "lowres" in b:
        kw = {
            "lowres": upsample_lowres(b["lowres"], size=x.shape[1]),
            "aug_level": jnp.full((x.shape[0],), 0.3),
        }
    return (x, t, b["text_emb"], b["text_mask"]), kw


@pytest.fixture(scope="module")
def base_apply(tiny_base):
    params = tiny_base.params
    fn = jax.jit(lambda p, a, k: tiny_base.model.apply({"params": p}, *a, **k))
    return params, fn


@pytest.fixture(scope="module")
def sr_apply(tiny_sr):
    params = tiny_sr.params
    fn = jax.jit(lambda p, a, k: tiny_sr.model.apply({"params": p}, *a, **k))
    return params, fn


def test_make_model_kinds():
    assert isinstance(make_model(get_preset("tiny_base")), UNet)
    assert isinstance(make_model(get_preset("tiny_sr")), EfficientUNet)
    assert isinstance(make_model(get_preset("imagen_sr_1024").model), EfficientUNet)


def test_make_model_rejects_unknown_keys():
    cfg = get_preset("tiny_base")
    with pytest.raises(AttributeError):  # locked ConfigDict: unknown keys cannot be set
        cfg.model.chanel_mult = (1, 2)
    m = dict(cfg.model)
    m["chanel_mult"] = (1, 2)
    with pytest.raises(ValueError, match="chanel_mult"):
        make_model(m_cfg(m))
    with pytest.raises(ValueError, match="kind"):
        make_model(m_cfg({**dict(cfg.model), "kind": "dit"}))
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("imagen_base_128")


def m_cfg(d):
    import ml_collections

    return ml_collections.ConfigDict(d)


def test_unet_output_shape_and_text_effects(tiny_base, base_apply):
    params, fn = base_apply
    args, kw = _inputs(tiny_base)
    out = fn(params, args, kw)
    assert out.shape == tiny_base.batch["image"].shape and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    x, t, te, tm = args
    # Masked-out text tokens do not matter...
    te2 = jnp.where(tm[..., None], te, 100.0 * jax.random.normal(jax.random.key(5), te.shape))
    np.testing.assert_allclose(fn(params, (x, t, te2, tm), kw), out, atol=1e-5)
    # ...the visible ones do, and so does the time.
    te3 = te.at[:, 0].set(jax.random.normal(jax.random.key(7), te[:, 0].shape))
    assert float(jnp.max(jnp.abs(fn(params, (x, t, te3, tm), kw) - out))) > 1e-3
    assert float(jnp.max(jnp.abs(fn(params, (x, 1 - t, te, tm), kw) - out))) > 1e-3
    # A dropped caption (zero embedding, all-False mask) gives a finite output.
    dropped = fn(params, (x, t, jnp.zeros_like(te), jnp.zeros_like(tm)), kw)
    assert bool(jnp.all(jnp.isfinite(dropped)))
    # Examples are independent of each other.
    one = fn(params, (x[:1], t[:1], te[:1], tm[:1]), kw)
    np.testing.assert_allclose(one, out[:1], atol=1e-5)


def test_efficient_unet_conditioning(tiny_sr, sr_apply):
    params, fn = sr_apply
    args, kw = _inputs(tiny_sr)
    out = fn(params, args, kw)
    assert out.shape == tiny_sr.batch["image"].shape
    x, t, te, tm = args
    te2 = jnp.where(tm[..., None], te, 50.0)
    np.testing.assert_allclose(fn(params, (x, t, te2, tm), kw), out, atol=1e-5)
    kw_lr = {**kw, "lowres": -kw["lowres"]}
    assert float(jnp.max(jnp.abs(fn(params, args, kw_lr) - out))) > 1e-3
    kw_aug = {**kw, "aug_level": kw["aug_level"] + 0.5}
    assert float(jnp.max(jnp.abs(fn(params, args, kw_aug) - out))) > 1e-3
    dropped = fn(params, (x, t, jnp.zeros_like(te), jnp.zeros_like(tm)), kw)
    assert bool(jnp.all(jnp.isfinite(dropped)))


def test_shape_checks_name_the_input(tiny_base, tiny_sr):
    p = tiny_base.params
    m = tiny_base.model
    (x, t, te, tm), _ = _inputs(tiny_base)
    with pytest.raises(ValueError, match="x"):
        m.apply({"params": p}, x[..., :2], t, te, tm)
    with pytest.raises(ValueError, match="time"):
        m.apply({"params": p}, x, t[:2], te, tm)
    with pytest.raises(ValueError, match="text_emb"):
        m.apply({"params": p}, x, t, te[..., :5], tm)
    with pytest.raises(ValueError, match="text_mask"):
        m.apply({"params": p}, x, t, te, tm[:, :3])
    with pytest.raises(ValueError, match="text_mask"):
        m.apply({"params": p}, x, t, te, tm.astype(jnp.float32))
    with pytest.raises(ValueError, match="lowres"):
        m.apply({"params": p}, x, t, te, tm, lowres=x, aug_level=t)
    (x, t, te, tm), kw = _inputs(tiny_sr)
    ps = tiny_sr.params
    with pytest.raises(ValueError, match="lowres"):
        tiny_sr.model.apply({"params": ps}, x, t, te, tm)
    with pytest.raises(ValueError, match="lowres"):
        tiny_sr.model.apply(
            {"params": ps},
            x,
            t,
            te,
            tm,
            lowres=kw["lowres"][:, :16, :16],
            aug_level=kw["aug_level"],
        )
    with pytest.raises(ValueError, match="aug_level"):
        tiny_sr.model.apply(
            {"params": ps}, x, t, te, tm, lowres=kw["lowres"], aug_level=kw["aug_level"][:1]
        )


def test_unconditional_model_takes_no_text():
    cfg = get_preset("tiny_base")
    cfg.model.text_dim = None
    m = make_model(cfg)
    x = jnp.zeros((2, 16, 16, 3))
    p = jax.eval_shape(lambda: m.init(jax.random.key(0), x, jnp.zeros(2), None, None))["params"]
    assert "text" not in p
    out = jax.eval_shape(lambda p: m.apply({"params": p}, x, jnp.zeros(2), None, None), p)
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="unconditional"):
        jax.eval_shape(
            lambda p: m.apply(
                {"params": p}, x, jnp.zeros(2), jnp.zeros((2, 3, 32)), jnp.ones((2, 3), bool)
            ),
            p,
        )


def test_bfloat16_compute_float32_params():
    cfg = get_preset("tiny_sr")
    cfg.model.dtype = "bfloat16"
    cfg.model.remat = True
    shapes = abstract_params(cfg)
    assert {p.dtype for p in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    m = make_model(cfg)
    b = make_batch(cfg, 1)
    lowres = upsample_lowres(b["lowres"], size=32)

    def run(params):
        return m.apply(
            {"params": params},
            b["image"],
            jnp.full((1,), 0.5),
            b["text_emb"],
            b["text_mask"],
            lowres=lowres,
            aug_level=jnp.zeros(1),
            capture_intermediates=lambda mdl, _: mdl.name in ("conv_in", "up_1_attn"),
            mutable=["intermediates"],
        )

    out, inter = jax.eval_shape(run, shapes)
    assert out.dtype == jnp.float32 and out.shape == b["image"].shape
    # The activations are bfloat16.
    assert inter["intermediates"]["conv_in"]["__call__"][0].dtype == jnp.bfloat16
    assert inter["intermediates"]["up_1_attn"]["__call__"][0].dtype == jnp.bfloat16


def test_remat_does_not_change_the_function():
    import ml_collections

    base = {
        "kind": "unet",
        "image_size": 8,
        "model_channels": 4,
        "channel_mult": (1,),
        "num_res_blocks": 1,
        "attention_resolutions": (8,),
        "cross_attention_resolutions": (8,),
        "num_head_channels": 4,
        "text_dim": 6,
        "num_groups": 2,
    }
    m1 = make_model(ml_collections.ConfigDict(base))
    m2 = make_model(ml_collections.ConfigDict({**base, "remat": True}))
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([0.2, 0.7])
    text = jax.random.normal(jax.random.key(2), (2, 5, 6))
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    params = random_params(ml_collections.ConfigDict(base), seed=1)
    # Residual and attention blocks are rematerialised under the same parameter names.
    assert jax.tree.structure(params) == jax.tree.structure(
        jax.eval_shape(lambda: m2.init(jax.random.key(0), x, t, text, mask)["params"])
    )

    # Every residual block (5) and attention block (down, mid and two up: 4) is one.
    jaxpr = jax.make_jaxpr(lambda p: m2.apply({"params": p}, x, t, text, mask))(params)
    assert sum(e.primitive.name.startswith("remat") for e in jaxpr.jaxpr.eqns) == 9

    def loss(model, p):
        return jnp.sum(model.apply({"params": p}, x, t, text, mask) ** 2)

    g1 = jax.jit(jax.grad(lambda p: loss(m1, p)))(params)
    g2 = jax.jit(jax.grad(lambda p: loss(m2, p)))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(a))))


@pytest.mark.parametrize(
    "name,target", [("imagen_base_64", 2e9), ("imagen_sr_256", 600e6), ("imagen_sr_1024", 400e6)]
)
def test_imagen_preset_parameter_counts(name, target):
    n = _count(name)
    assert abs(n - target) / target < 0.15, (name, n)


def test_tiny_presets_are_tiny():
    assert 1_000 <= param_count(get_preset("tiny_base")) <= 100_000
    assert 1_000 <= param_count(get_preset("tiny_sr")) <= 100_000


def test_sr_1024_has_no_self_attention():
    flat = jax.tree_util.tree_flatten_with_path(_abstract("imagen_sr_1024"))[0]
    names = ["/".join(str(k.key) for k in path) for path, _ in flat]
    assert not any("qkv" in n for n in names)
    assert any("text_kv" in n for n in names)
    flat256 = jax.tree_util.tree_flatten_with_path(_abstract("imagen_sr_256"))[0]
    assert any("qkv" in "/".join(str(k.key) for k in p) for p, _ in flat256)
