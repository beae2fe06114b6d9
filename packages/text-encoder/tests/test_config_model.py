"""Configs, parameter counts, and properties of the T5 encoder stack."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.text_encoder import (
    PRESETS,
    T5Encoder,
    count_params,
    get_config,
    init_params,
    make_config,
    make_encode_fn,
    param_shapes,
    relative_position_bucket,
)


def _formula(cfg) -> int:
    """Parameter count of a T5 v1.1 encoder from its sizes."""
    inner = cfg.num_heads * cfg.d_kv
    per_layer = 4 * cfg.d_model * inner + 3 * cfg.d_model * cfg.d_ff + 2 * cfg.d_model
    return (
        cfg.vocab_size * cfg.d_model
        + cfg.num_layers * per_layer
        + cfg.num_heads * cfg.relative_attention_num_buckets
        + cfg.d_model
    )


def test_presets_and_unknown_preset():
    assert set(PRESETS) == {"tiny", "small", "base", "large", "xl", "xxl"}
    with pytest.raises(ValueError, match="preset must be one of"):
        get_config("huge")
    cfg = get_config("base")
    with pytest.raises(AttributeError):
        cfg.not_a_key = 1  # locked: unknown keys are an error


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "xxl"])
def test_param_count_matches_formula(preset):
    cfg = get_config(preset)
    assert count_params(cfg) == _formula(cfg)


def test_xxl_param_count_and_shapes():
    cfg = get_config("xxl")
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff, cfg.vocab_size) == (
        4096,
        24,
        64,
        10240,
        32128,
    )
    shapes = param_shapes(cfg)
    n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    # The number written in the README.
    assert n == _formula(cfg) == 4_762_310_656
    assert 4.6e9 < n - 32128 * 4096 < 4.7e9  # ≈4.6B without the embedding table
    assert shapes["relpos_bias"]["rel_embedding"].shape == (64, 32)
    assert "relpos_bias" not in shapes["layers_1"]  # one bias table per stack
    assert shapes["layers_23"]["attention"]["query"]["kernel"].shape == (4096, 4096)
    assert shapes["layers_0"]["mlp"]["wi_1"]["kernel"].shape == (4096, 10240)
    # The full-size forward pass, traced only.
    model = T5Encoder.from_config(cfg, dtype=jnp.bfloat16)
    out = jax.eval_shape(
        lambda p, i, m: model.apply({"params": p}, i, m),
        shapes,
        jax.ShapeDtypeStruct((2, 128), jnp.int32),
        jax.ShapeDtypeStruct((2, 128), jnp.bool_),
    )
    assert out.shape == (2, 128, 4096) and out.dtype == jnp.bfloat16


def test_make_config_validation():
    with pytest.raises(ValueError, match="missing keys"):
        make_config(vocab_size=10, d_model=8)
    with pytest.raises(ValueError, match="d_ff must be a positive int"):
        make_config(vocab_size=10, d_model=8, d_kv=2, num_heads=4, d_ff=0, num_layers=1)
    with pytest.raises(ValueError, match="even"):
        make_config(
            vocab_size=10,
            d_model=8,
            d_kv=2,
            num_heads=4,
            d_ff=8,
            num_layers=1,
            relative_attention_num_buckets=7,
        )


def _bucket_reference(rel: int, num_buckets: int, max_distance: int) -> int:
    """Bidirectional T5 bucketing, written out for one integer in float64 arithmetic."""
    half = num_buckets // 2
    out = half if rel > 0 else 0
    n = abs(rel)
    max_exact = half // 2
    if n < max_exact:
        return out + n
    val = max_exact + int(
        math.log(n / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    )
    return out + min(val, half - 1)


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (4, 6), (64, 256)])
def test_relative_position_bucket(num_buckets, max_distance):
    rel = np.arange(-300, 301)
    got = relative_position_bucket(rel, num_buckets=num_buckets, max_distance=max_distance)
    want = [_bucket_reference(int(r), num_buckets, max_distance) for r in rel]
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == num_buckets - 1
    assert got.dtype == np.int32
    # Monotone in |distance| within each direction, the two directions disjoint.
    assert np.all(np.diff(got[rel >= 1]) >= 0) and np.all(np.diff(got[rel <= 0]) <= 0)
    assert set(got[rel > 0]).isdisjoint(set(got[rel <= 0]))


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("tiny")
    return cfg, init_params(cfg, jax.random.key(0))


@pytest.fixture(scope="module")
def tiny_enc(tiny):
    return make_encode_fn(*tiny)


def test_forward_shapes_and_dtypes(tiny, tiny_enc):
    cfg, params = tiny
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, 10)).astype(np.int32)
    mask = np.ones((3, 10), bool)
    out = tiny_enc(ids, mask)
    chex.assert_shape(out, (3, 10, cfg.d_model))
    assert out.dtype == jnp.float32
    assert np.isfinite(np.asarray(out)).all()
    out16 = make_encode_fn(cfg, params, dtype=jnp.bfloat16)(ids, mask)
    assert out16.dtype == jnp.bfloat16
    err = np.abs(np.asarray(out16, np.float32) - np.asarray(out))
    assert err.max() < 0.1 * np.abs(np.asarray(out)).max()
    assert err.max() > 0  # really computed in bfloat16


def test_padding_does_not_change_real_positions(tiny, tiny_enc):
    """Outputs at real tokens depend neither on the padded length nor on padded ids."""
    cfg, _ = tiny
    enc = tiny_enc
    rng = np.random.default_rng(1)
    ids = rng.integers(3, cfg.vocab_size, (2, 7)).astype(np.int32)
    short = np.asarray(enc(ids, np.ones((2, 7), bool)))
    padded = np.concatenate([ids, rng.integers(0, cfg.vocab_size, (2, 9)).astype(np.int32)], 1)
    mask = np.zeros((2, 16), bool)
    mask[:, :7] = True
    long = np.asarray(enc(padded, mask))
    np.testing.assert_allclose(long[:, :7], short, rtol=1e-5, atol=1e-5)
    # Without the mask the padded ids do change the outputs.
    unmasked = np.asarray(enc(padded, np.ones((2, 16), bool)))
    assert np.abs(unmasked[:, :7] - short).max() > 1e-3


def test_relative_positions_matter(tiny_enc):
    """Reversing a sequence is not a permutation of outputs (position information is used)."""
    enc = tiny_enc
    ids = np.arange(3, 11, dtype=np.int32)[None]
    out = np.asarray(enc(ids, np.ones_like(ids, bool)))[0]
    rev = np.asarray(enc(ids[:, ::-1].copy(), np.ones_like(ids, bool)))[0][::-1]
    assert np.abs(out - rev).max() > 1e-3


def test_module_direct_apply_and_shape_checks(tiny, tiny_enc):
    cfg, params = tiny
    model = T5Encoder.from_config(cfg)
    ids = jnp.ones((2, 5), jnp.int32)
    out = model.apply({"params": params}, ids)  # mask defaults to all True
    np.testing.assert_allclose(
        out, model.apply({"params": params}, ids, jnp.ones((2, 5), bool)), rtol=0, atol=0
    )
    enc = tiny_enc
    with pytest.raises(AssertionError):
        enc(np.ones((2, 5), np.int32), np.ones((2, 6), bool))
    with pytest.raises(AssertionError):
        enc(np.ones((5,), np.int32), np.ones((5,), bool))
    with pytest.raises(ValueError, match="token ids must lie in"):
        enc(np.full((1, 3), cfg.vocab_size, np.int32), np.ones((1, 3), bool))


def test_make_encode_fn_rejects_mismatched_params(tiny):
    cfg, params = tiny
    other = get_config("tiny")
    other.d_ff = 64
    with pytest.raises(ValueError, match="wrong shape"):
        make_encode_fn(other, params)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        make_encode_fn(cfg, params, dtype=jnp.float16)
