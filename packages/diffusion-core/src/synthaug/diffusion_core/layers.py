"""Building blocks shared by the U-Nets: embeddings, normalisation, res blocks, attention.

All modules take ``dtype`` (the compute dtype, e.g. ``jnp.bfloat16``) and ``param_dtype``
(the storage dtype of the parameters, float32 by default). Every convolution and matmul
(attention logits included) runs in the compute dtype; normalisations and softmaxes are
computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jnp.ndarray
Dtype = Any

__all__ = [
    "AttentionBlock",
    "Downsample",
    "GroupNorm",
    "ResBlock",
    "TextConditioning",
    "TimestepEmbedding",
    "Upsample",
    "sinusoidal_embedding",
]


def sinusoidal_embedding(x: Array, *, dim: int, max_period: float = 10000.0) -> Array:
    """Sinusoidal features of a batch of scalars (the transformer/ADM timestep embedding).

    Args:
      x: ``[B]`` values (e.g. ``1000 * t``).
      dim: output width (even).
      max_period: longest period of the sinusoids.

    Returns:
      ``[B, dim]`` float32 features ``[cos(x f_k), sin(x f_k)]``.
    """
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = x.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def _groups(channels: int, num_groups: int) -> int:
    return math.gcd(channels, num_groups)


class GroupNorm(nn.Module):
    """GroupNorm computed in float32, returned in the compute dtype."""

    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        groups = _groups(x.shape[-1], self.num_groups)
        y = nn.GroupNorm(
            num_groups=groups, epsilon=1e-5, dtype=jnp.float32, param_dtype=self.param_dtype
        )(x.astype(jnp.float32))
        return y.astype(self.dtype)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of a scalar followed by a two-layer SiLU MLP."""

    dim: int
    freq_dim: int | None = None
    scale: float = 1000.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: Array) -> Array:
        freq_dim = self.freq_dim or max(2 * (self.dim // 8), 2)
        feats = sinusoidal_embedding(t * self.scale, dim=freq_dim)
        h = nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="dense_0")(
            feats.astype(self.dtype)
        )
        h = nn.silu(h)
        return nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="dense_1")(h)


def _conv(
    features: int,
    kernel: int,
    dtype,
    param_dtype,
    *,
    stride: int = 1,
    name=None,
    zero_init: bool = False,
) -> nn.Conv:
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding="SAME" if stride == 1 else ((kernel // 2, kernel // 2),) * 2,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.initializers.zeros if zero_init else nn.initializers.lecun_normal(),
        name=name,
    )


class Downsample(nn.Module):
    """Halve the resolution: a strided 3x3 conv (``use_conv``) or 2x2 average pooling."""

    channels: int | None = None
    use_conv: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.use_conv:
            ch = self.channels or x.shape[-1]
            return _conv(ch, 3, self.dtype, self.param_dtype, stride=2, name="conv")(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling then (optionally) a 3x3 conv."""

    channels: int | None = None
    use_conv: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        if self.use_conv:
            ch = self.channels or x.shape[-1]
            x = _conv(ch, 3, self.dtype, self.param_dtype, name="conv")(x)
        return x


class ResBlock(nn.Module):
    """BigGAN-style residual block with scale-shift norm conditioning.

    ``GN -> SiLU -> [up/down] -> conv3x3 -> GN * (1 + scale) + shift -> SiLU -> dropout ->
    conv3x3 (zero-initialised)``, plus a shortcut (1x1 conv when the width changes, with the
    same up/down resampling). The sum is multiplied by ``skip_scale`` (``1/sqrt(2)`` in the
    Efficient U-Net, 1 in the ADM U-Net).

    Attributes:
      out_channels: output width.
      up, down: resample inside the block (BigGAN style).
      use_scale_shift_norm: FiLM (scale and shift) from the embedding; else it is added.
      dropout: dropout rate before the last conv.
      deterministic: disable dropout.
      skip_scale: multiplier of the residual sum.
    """

    out_channels: int
    up: bool = False
    down: bool = False
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    deterministic: bool = True
    skip_scale: float = 1.0
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, emb: Array) -> Array:
        dt, pdt = self.dtype, self.param_dtype
        h = nn.silu(GroupNorm(self.num_groups, dt, pdt, name="norm_0")(x))
        skip = x
        if self.up:
            h = Upsample(use_conv=False)(h)
            skip = Upsample(use_conv=False)(skip)
        elif self.down:
            h = Downsample(use_conv=False)(h)
            skip = Downsample(use_conv=False)(skip)
        h = _conv(self.out_channels, 3, dt, pdt, name="conv_0")(h)
        emb_out = nn.Dense(
            2 * self.out_channels if self.use_scale_shift_norm else self.out_channels,
            dtype=dt,
            param_dtype=pdt,
            name="emb_proj",
        )(nn.silu(emb.astype(dt)))[:, None, None, :]
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = GroupNorm(self.num_groups, dt, pdt, name="norm_1")(h) * (1 + scale) + shift
        else:
            h = GroupNorm(self.num_groups, dt, pdt, name="norm_1")(h + emb_out)
        h = nn.silu(h)
        h = nn.Dropout(self.dropout, deterministic=self.deterministic)(h)
        h = _conv(self.out_channels, 3, dt, pdt, name="conv_1", zero_init=True)(h)
        if skip.shape[-1] != self.out_channels:
            skip = _conv(self.out_channels, 1, dt, pdt, name="skip")(skip)
        return ((skip.astype(dt) + h) * self.skip_scale).astype(dt)


def _masked_attention(q: Array, k: Array, v: Array, mask: Array | None) -> Array:
    """Multi-head attention; q ``[B,Q,H,D]``, k/v ``[B,K,H,D]``, mask ``[B,K]`` bool."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    # The matmul in the compute dtype (forward and backward), the softmax in float32.
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class AttentionBlock(nn.Module):
    """Self-attention over the pixels, with the text tokens concatenated to keys and values.

    Attributes:
      num_heads: number of heads (or None to derive it from ``head_channels``).
      head_channels: channels per head when ``num_heads`` is None.
      use_text: concatenate the projected text tokens to the keys and values.
      self_attention: attend to the pixels too; if False (``use_text`` must then be True)
        the block is a pure text cross-attention.
    """

    num_heads: int | None = None
    head_channels: int = 64
    use_text: bool = False
    self_attention: bool = True
    skip_scale: float = 1.0
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, text: Array | None = None, text_mask: Array | None = None):
        dt, pdt = self.dtype, self.param_dtype
        b, hgt, wid, c = x.shape
        heads = self.num_heads or max(c // self.head_channels, 1)
        if c % heads:
            raise ValueError(f"attention width {c} is not divisible by num_heads={heads}")
        h = GroupNorm(self.num_groups, dt, pdt, name="norm")(x).reshape(b, hgt * wid, c)
        use_text = self.use_text and text is not None
        if not (self.self_attention or use_text):
            raise ValueError("an attention block without self-attention needs text tokens")
        if self.self_attention:
            qkv = nn.DenseGeneral((3, heads, c // heads), dtype=dt, param_dtype=pdt, name="qkv")(h)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q = nn.DenseGeneral((heads, c // heads), dtype=dt, param_dtype=pdt, name="q")(h)
        mask = None
        if use_text:
            kv = nn.DenseGeneral((2, heads, c // heads), dtype=dt, param_dtype=pdt, name="text_kv")(
                text.astype(dt)
            )
            if self.self_attention:
                k = jnp.concatenate([k, kv[:, :, 0]], axis=1)
                v = jnp.concatenate([v, kv[:, :, 1]], axis=1)
                mask = jnp.concatenate([jnp.ones((b, hgt * wid), bool), text_mask], axis=1)
            else:
                k, v, mask = kv[:, :, 0], kv[:, :, 1], text_mask
        out = _masked_attention(q, k, v, mask)
        out = nn.DenseGeneral(
            c,
            axis=(-2, -1),
            dtype=dt,
            param_dtype=pdt,
            kernel_init=nn.initializers.zeros,
            name="proj_out",
        )(out)
        return ((x + out.reshape(b, hgt, wid, c)) * self.skip_scale).astype(dt)


class TextConditioning(nn.Module):
    """LayerNorm and projection of the text tokens, and their attention pooling.

    The pooled vector is an attention over the tokens with the masked mean as the query (the
    mean itself is a key, so a fully masked caption pools to a finite vector).

    Returns:
      ``(tokens [B,L,dim_tokens], pooled [B,dim_pooled])``.
    """

    dim_tokens: int
    dim_pooled: int
    num_heads: int = 8
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, text_emb: Array, text_mask: Array) -> tuple[Array, Array]:
        dt, pdt = self.dtype, self.param_dtype
        h = nn.LayerNorm(dtype=jnp.float32, param_dtype=pdt, name="norm")(
            text_emb.astype(jnp.float32)
        )
        tokens = nn.Dense(self.dim_tokens, dtype=dt, param_dtype=pdt, name="proj")(h.astype(dt))
        m = text_mask.astype(jnp.float32)[..., None]
        mean = jnp.sum(tokens.astype(jnp.float32) * m, axis=1) / jnp.maximum(
            jnp.sum(m, axis=1), 1.0
        )
        heads = math.gcd(self.num_heads, self.dim_tokens)
        dh = self.dim_tokens // heads
        keys_in = jnp.concatenate([mean[:, None, :].astype(dt), tokens], axis=1)
        keys_mask = jnp.concatenate([jnp.ones_like(text_mask[:, :1]), text_mask], axis=1)
        q = nn.DenseGeneral((heads, dh), dtype=dt, param_dtype=pdt, name="pool_q")(
            mean[:, None, :].astype(dt)
        )
        kv = nn.DenseGeneral((2, heads, dh), dtype=dt, param_dtype=pdt, name="pool_kv")(keys_in)
        pooled = _masked_attention(q, kv[:, :, 0], kv[:, :, 1], keys_mask)[:, 0]
        pooled = nn.DenseGeneral(
            self.dim_pooled, axis=(-2, -1), dtype=dt, param_dtype=pdt, name="pool_out"
        )(pooled)
        return tokens, pooled
