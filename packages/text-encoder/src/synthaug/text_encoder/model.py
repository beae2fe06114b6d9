"""The T5 v1.1 encoder stack as Flax Linen modules.

T5 v1.1 encoder: token embedding (no scaling), ``num_layers`` pre-norm blocks of
self-attention and gated-GELU MLP, a final RMSNorm. No biases anywhere, no scaling of the
attention logits (it is folded into the query weights), and one relative-position bias
table per stack, computed once and added to the logits of every layer.

The parameter tree follows the t5x names, so that checkpoints map one to one::

    token_embedder/embedding                       [vocab, d_model]
    relpos_bias/rel_embedding                      [num_heads, num_buckets]
    layers_{i}/pre_attention_layer_norm/scale      [d_model]
    layers_{i}/attention/{query,key,value}/kernel  [d_model, num_heads * d_kv]
    layers_{i}/attention/out/kernel                [num_heads * d_kv, d_model]
    layers_{i}/pre_mlp_layer_norm/scale            [d_model]
    layers_{i}/mlp/{wi_0,wi_1}/kernel              [d_model, d_ff]
    layers_{i}/mlp/wo/kernel                       [d_ff, d_model]
    encoder_norm/scale                             [d_model]
"""

from __future__ import annotations

import math
from typing import Any

import chex
import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.text_encoder.config import validate_config

Dtype = Any


def relative_position_bucket(
    relative_position: np.ndarray, *, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Bidirectional T5 relative-position buckets.

    Half of the buckets hold keys after the query, half keys before it; within a half, the
    first ``num_buckets // 4`` distances get a bucket each, larger distances share buckets
    spaced logarithmically up to ``max_distance``, and everything farther shares the last.

    Args:
      relative_position: integer array, ``key_position - query_position``.
      num_buckets: total number of buckets (even).
      max_distance: the distance from which all positions share the last bucket.

    Returns:
      int32 array of bucket indices in ``[0, num_buckets)``, same shape as the input.
    """
    rel = np.asarray(relative_position, np.int64)
    half = num_buckets // 2
    bucket = np.where(rel > 0, half, 0).astype(np.int64)
    dist = np.abs(rel)
    max_exact = half // 2
    # float32 arithmetic, as the reference implementations use.
    scaled = np.log(np.maximum(dist, 1).astype(np.float32) / np.float32(max_exact)) / np.float32(
        math.log(max_distance / max_exact)
    )
    large = max_exact + (scaled * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    bucket = bucket + np.where(dist < max_exact, dist, large)
    return bucket.astype(np.int32)


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.epsilon)
        return (y.astype(self.dtype) * scale.astype(self.dtype)).astype(self.dtype)


def _dense(features: int, name: str, dtype: Dtype, precision) -> nn.Dense:
    return nn.Dense(
        features,
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision,
        kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
        name=name,
    )


class SelfAttention(nn.Module):
    """Multi-head self-attention without biases or logit scaling, plus an additive bias."""

    num_heads: int
    d_kv: int
    d_model: int
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        inner = self.num_heads * self.d_kv
        split = lambda t: einops.rearrange(t, "n l (h k) -> n h l k", h=self.num_heads)
        q = split(_dense(inner, "query", self.dtype, self.precision)(x))
        k = split(_dense(inner, "key", self.dtype, self.precision)(x))
        v = split(_dense(inner, "value", self.dtype, self.precision)(x))
        logits = jnp.einsum(
            "nhqk,nhsk->nhqs", q, k, precision=self.precision, preferred_element_type=jnp.float32
        )
        weights = jax.nn.softmax(logits + bias, axis=-1).astype(self.dtype)
        out = jnp.einsum("nhqs,nhsk->nhqk", weights, v, precision=self.precision)
        out = einops.rearrange(out, "n h l k -> n l (h k)")
        return _dense(self.d_model, "out", self.dtype, self.precision)(out)


class GatedGeluMlp(nn.Module):
    """``wo(gelu_tanh(wi_0 x) * wi_1 x)``."""

    d_ff: int
    d_model: int
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gate = jax.nn.gelu(
            _dense(self.d_ff, "wi_0", self.dtype, self.precision)(x), approximate=True
        )
        lin = _dense(self.d_ff, "wi_1", self.dtype, self.precision)(x)
        return _dense(self.d_model, "wo", self.dtype, self.precision)(gate * lin)


class EncoderLayer(nn.Module):
    """One pre-norm T5 encoder block."""

    num_heads: int
    d_kv: int
    d_model: int
    d_ff: int
    epsilon: float
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        h = RMSNorm(self.epsilon, self.dtype, name="pre_attention_layer_norm")(x)
        x = x + SelfAttention(
            self.num_heads, self.d_kv, self.d_model, self.dtype, self.precision, name="attention"
        )(h, bias)
        h = RMSNorm(self.epsilon, self.dtype, name="pre_mlp_layer_norm")(x)
        return x + GatedGeluMlp(self.d_ff, self.d_model, self.dtype, self.precision, name="mlp")(h)


class RelativePositionBias(nn.Module):
    """The per-stack table of relative-position biases, ``[num_heads, num_buckets]``."""

    num_heads: int
    num_buckets: int

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param(
            "rel_embedding",
            nn.initializers.normal(0.1),
            (self.num_heads, self.num_buckets),
            jnp.float32,
        )


class T5Encoder(nn.Module):
    """The T5 v1.1 encoder.

    Attributes:
      vocab_size, d_model, d_kv, num_heads, d_ff, num_layers: sizes (see ``get_config``).
      num_buckets, max_distance: relative-position bucketing.
      epsilon: RMSNorm epsilon.
      dtype: computation dtype (float32 or bfloat16); parameters are stored in float32
        and cast; norms and softmax are computed in float32.
      precision: matmul precision passed to ``jax.lax`` (None: the backend default).
    """

    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    num_buckets: int = 32
    max_distance: int = 128
    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    precision: Any = None

    @classmethod
    def from_config(cls, config, *, dtype: Dtype = jnp.float32, precision=None) -> T5Encoder:
        """A module from a config of :func:`synthaug.text_encoder.get_config`.

        Args:
          config: the encoder ConfigDict.
          dtype: computation dtype.
          precision: matmul precision (None: backend default).

        Returns:
          The module.
        """
        validate_config(config)
        return cls(
            vocab_size=config.vocab_size,
            d_model=config.d_model,
            d_kv=config.d_kv,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            num_layers=config.num_layers,
            num_buckets=config.relative_attention_num_buckets,
            max_distance=config.relative_attention_max_distance,
            epsilon=config.layer_norm_epsilon,
            dtype=dtype,
            precision=precision,
        )

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Encode token ids.

        Args:
          ids: int ``[N, L]`` token ids.
          mask: bool ``[N, L]``, True on real tokens (None: all True). Padded keys are
            not attended to; outputs at padded positions are computed but meaningless.

        Returns:
          ``[N, L, d_model]`` hidden states in ``dtype``.
        """
        chex.assert_rank(ids, 2)
        n, length = ids.shape
        if mask is None:
            mask = jnp.ones((n, length), bool)
        chex.assert_shape(mask, (n, length))

        emb = nn.Embed(
            self.vocab_size,
            self.d_model,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            embedding_init=nn.initializers.normal(1.0),
            name="token_embedder",
        )
        x = emb(ids)
        rel_table = RelativePositionBias(self.num_heads, self.num_buckets, name="relpos_bias")()
        pos = np.arange(length)
        buckets = relative_position_bucket(
            pos[None, :] - pos[:, None],
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        bias = rel_table.astype(jnp.float32)[:, buckets][None]  # [1, H, L, L]
        neg = jnp.finfo(jnp.float32).min
        bias = bias + jnp.where(mask.astype(bool), 0.0, neg)[:, None, None, :]  # [N, H, L, L]

        for i in range(self.num_layers):
            x = EncoderLayer(
                self.num_heads,
                self.d_kv,
                self.d_model,
                self.d_ff,
                self.epsilon,
                self.dtype,
                self.precision,
                name=f"layers_{i}",
            )(x, bias)
        return RMSNorm(self.epsilon, self.dtype, name="encoder_norm")(x)


def init_params(config, rng: jax.Array) -> dict:
    """Random float32 parameters of a T5 encoder (for tests and toy runs).

    The values are drawn on the host with numpy (seeded from ``rng``), which avoids
    compiling a random-number program for every weight: kernels ~ N(0, 1/fan_in), the
    embedding ~ N(0, 1), the relative-position table ~ N(0, 0.1²), norm scales 1. Real
    weights come from :func:`load_hf_checkpoint` / :func:`load_t5x_checkpoint`;
    ``T5Encoder.init`` remains available for a Flax-native init.

    Args:
      config: the encoder ConfigDict.
      rng: a ``jax.random`` key.

    Returns:
      The params dict (without the ``{"params": ...}`` wrapper), numpy float32 arrays.
    """
    shapes = param_shapes(config)
    seed = np.asarray(jax.random.key_data(rng)).astype(np.uint32).ravel().tolist()
    gen = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = leaf.shape
        if "scale" in name:
            return np.ones(shape, np.float32)
        if "rel_embedding" in name:
            return (0.1 * gen.standard_normal(shape)).astype(np.float32)
        if "embedding" in name:
            return gen.standard_normal(shape).astype(np.float32)
        return (gen.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def param_shapes(config) -> dict:
    """The parameter tree as ``jax.ShapeDtypeStruct``s, computed with ``jax.eval_shape``."""
    model = T5Encoder.from_config(config)
    ids = jax.ShapeDtypeStruct((1, 4), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, 4), jnp.bool_)
    return jax.eval_shape(model.init, jax.random.key(0), ids, mask)["params"]


def count_params(config) -> int:
    """The exact number of parameters of an encoder (embedding included), via eval_shape."""
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(param_shapes(config))))
