"""The ADM U-Net family of the public pretrained pixel-space generators.

One module, :class:`ADMUNet`, covers

* OpenAI's ADM (guided-diffusion ``UNetModel`` / ``SuperResModel``, Dhariwal & Nichol 2021):
  class-label embedding, SiLU, ``4 * model_channels`` time embedding, learned-range variance
  output (``out_channels = 6``), the 64->256 upsampler (the low-res image concatenated to the
  input);
* DeepFloyd IF (the original ``deepfloyd_if.model.UNetModel`` / ``SuperResUNetModel``, which
  diffusers ships as ``UNet2DConditionModel``): GELU, a ``model_channels * max(channel_mult)``
  time embedding, the T5 path (a projection of the tokens to the cross-attention width, a
  per-block GroupNorm of the tokens and key/value projection concatenated to the pixels' keys
  and values, an attention pooling of the tokens added to the time embedding), per-level
  res-block counts, scaled skip sums and, in the super-resolution stage, the noise-level
  embedding of the augmented low-res input.

Verified against the reference source (guided-diffusion ``unet.py``, diffusers
``unet_2d_condition.py``, ``resnet.py``, ``attention_processor.py``, ``embeddings.py``): GroupNorm
with 32 groups and eps 1e-5 everywhere, LayerNorm eps 1e-5, exact (erf) GELU, nearest-neighbour
upsampling and 2x2 average pooling inside the res blocks, ``[cos, sin]`` sinusoidal features of
the integer timestep, heads laid out contiguously (``head h`` uses channels ``h*d .. h*d+d``).
The text mask is not used: IF attends to every token of its 77-token T5 sequence, padding
included, as it was trained.

Timesteps: the samplers pass continuous ``time`` in (0, 1] (``(i + 1) / N`` for step ``i`` of
an ``N``-step schedule); with ``integer_timesteps`` the network sees ``round(time * N) - 1``,
the integer step the checkpoints were trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthaug.diffusion_core.layers import (
    Downsample,
    Upsample,
    sinusoidal_embedding,
)
from synthaug.diffusion_core.lowres import aug_step

Array = jnp.ndarray

__all__ = ["ADMUNet", "activation_fn"]

_EPS = 1e-5


def activation_fn(name: str):
    """``"silu"`` or ``"gelu"`` (the exact, erf-based GELU of ``torch.nn.GELU``)."""
    if name == "silu":
        return nn.silu
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    raise ValueError(f"activation must be 'silu' or 'gelu', got {name!r}")


class _GN(nn.Module):
    """GroupNorm with exactly ``num_groups`` groups (the references' 32), eps 1e-5, float32."""

    num_groups: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if x.shape[-1] % self.num_groups:
            raise ValueError(
                f"GroupNorm: {x.shape[-1]} channels are not divisible by {self.num_groups} groups"
            )
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        xf = x.astype(jnp.float32)
        g = xf.reshape(*x.shape[:-1], self.num_groups, c // self.num_groups)
        axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
        mean = jnp.mean(g, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + _EPS)).reshape(xf.shape)
        y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
        return y.astype(self.dtype)


class _MLPEmbedding(nn.Module):
    """Sinusoidal features of an integer step, then ``Dense -> act -> Dense``."""

    features: int
    freq_dim: int
    activation: str = "silu"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, steps):
        feats = sinusoidal_embedding(steps, dim=self.freq_dim).astype(self.dtype)
        h = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="dense_0")(
            feats
        )
        h = activation_fn(self.activation)(h)
        return nn.Dense(
            self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="dense_1"
        )(h)


class _ResBlock(nn.Module):
    """ADM's res block: ``GN -> act -> [up/down] -> conv3x3 -> GN * (1 + scale) + shift -> act
    -> dropout -> conv3x3`` plus a (1x1 conv) shortcut; the sum is divided by ``output_scale``.
    ``emb_act``: apply the activation to the embedding before its projection (off when the
    model applies it once to the embedding, IF's ``efficient_activation``)."""

    out_channels: int
    up: bool = False
    down: bool = False
    activation: str = "silu"
    emb_act: bool = True
    use_scale_shift_norm: bool = True
    output_scale: float = 1.0
    dropout: float = 0.0
    deterministic: bool = True
    num_groups: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb):
        dt, pdt = self.dtype, self.param_dtype
        act = activation_fn(self.activation)
        h = act(_GN(self.num_groups, dt, pdt, name="norm_0")(x))
        skip = x
        if self.up:
            h, skip = Upsample(use_conv=False)(h), Upsample(use_conv=False)(skip)
        elif self.down:
            h, skip = Downsample(use_conv=False)(h), Downsample(use_conv=False)(skip)
        conv = dict(dtype=dt, param_dtype=pdt, padding=((1, 1), (1, 1)))
        h = nn.Conv(self.out_channels, (3, 3), name="conv_0", **conv)(h)
        e = act(emb) if self.emb_act else emb
        width = 2 * self.out_channels if self.use_scale_shift_norm else self.out_channels
        e = nn.Dense(width, dtype=dt, param_dtype=pdt, name="emb_proj")(e.astype(dt))
        e = e[:, None, None, :]
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = _GN(self.num_groups, dt, pdt, name="norm_1")(h) * (1 + scale) + shift
        else:
            h = _GN(self.num_groups, dt, pdt, name="norm_1")(h + e)
        h = act(h)
        h = nn.Dropout(self.dropout, deterministic=self.deterministic)(h)
        h = nn.Conv(
            self.out_channels, (3, 3), kernel_init=nn.initializers.zeros, name="conv_1", **conv
        )(h)
        if skip.shape[-1] != self.out_channels:
            skip = nn.Conv(self.out_channels, (1, 1), dtype=dt, param_dtype=pdt, name="skip")(skip)
        out = skip.astype(dt) + h
        if self.output_scale != 1.0:
            out = out / self.output_scale
        return out.astype(dt)


def _attend(q, k, v):
    """q ``[B,Q,H,D]``, k/v ``[B,K,H,D]``: softmax in float32."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class _Attention(nn.Module):
    """Self-attention over the pixels (``qkv``), optionally with IF's text keys and values
    (``text_norm``: GroupNorm over the tokens; ``text_kv``) concatenated in front; with
    ``self_attention=False`` the pixels attend to the text only (IF-II's ``only_cross_attention``).
    """

    num_heads: int
    self_attention: bool = True
    use_text: bool = False
    num_groups: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, text=None):
        dt, pdt = self.dtype, self.param_dtype
        b, hh, ww, c = x.shape
        heads = self.num_heads
        if c % heads:
            raise ValueError(f"attention width {c} is not divisible by {heads} heads")
        dh = c // heads
        h = _GN(self.num_groups, dt, pdt, name="norm")(x).reshape(b, hh * ww, c)
        if self.self_attention:
            qkv = nn.DenseGeneral((3, heads, dh), dtype=dt, param_dtype=pdt, name="qkv")(h)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q = nn.DenseGeneral((heads, dh), dtype=dt, param_dtype=pdt, name="q")(h)
        if self.use_text:
            t = _GN(self.num_groups, dt, pdt, name="text_norm")(text)
            kv = nn.DenseGeneral((2, heads, dh), dtype=dt, param_dtype=pdt, name="text_kv")(t)
            if self.self_attention:
                k = jnp.concatenate([kv[:, :, 0], k], axis=1)
                v = jnp.concatenate([kv[:, :, 1], v], axis=1)
            else:
                k, v = kv[:, :, 0], kv[:, :, 1]
        elif not self.self_attention:
            raise ValueError("an attention block without self-attention needs the text path")
        out = _attend(q, k, v)
        out = nn.DenseGeneral(
            c,
            axis=(-2, -1),
            dtype=dt,
            param_dtype=pdt,
            kernel_init=nn.initializers.zeros,
            name="proj_out",
        )(out)
        return (x + out.reshape(b, hh, ww, c)).astype(dt)


class _TextPooling(nn.Module):
    """IF's ``encoder_pooling``: LayerNorm, attention pooling with the mean token (plus a
    learned positional embedding) as the query, a projection to the embedding width, LayerNorm.
    """

    features: int
    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens):
        dt, pdt = self.dtype, self.param_dtype
        d = tokens.shape[-1]
        if d % self.num_heads:
            raise ValueError(f"text width {d} is not divisible by {self.num_heads} pooling heads")
        dh = d // self.num_heads
        x = nn.LayerNorm(epsilon=_EPS, dtype=jnp.float32, param_dtype=pdt, name="norm_in")(
            tokens.astype(jnp.float32)
        ).astype(dt)
        pos = self.param("positional_embedding", nn.initializers.normal(d**-0.5), (1, d), pdt)
        cls = jnp.mean(x, axis=1, keepdims=True) + pos.astype(dt)
        xx = jnp.concatenate([cls, x], axis=1)

        def proj(name, inp):
            return nn.DenseGeneral((self.num_heads, dh), dtype=dt, param_dtype=pdt, name=name)(inp)

        pooled = _attend(proj("q", cls), proj("k", xx), proj("v", xx))[:, 0].reshape(-1, d)
        h = nn.Dense(self.features, dtype=dt, param_dtype=pdt, name="proj")(pooled)
        return nn.LayerNorm(epsilon=_EPS, dtype=jnp.float32, param_dtype=pdt, name="norm_out")(
            h.astype(jnp.float32)
        ).astype(dt)


def _per_level(value, levels: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * levels
    value = tuple(int(v) for v in value)
    if len(value) != levels:
        raise ValueError(f"{name} has {len(value)} entries, channel_mult has {levels}")
    return value


class ADMUNet(nn.Module):
    """The ADM / DeepFloyd IF U-Net (see the module docstring).

    Call: ``model.apply({"params": p}, x, time, text_emb=None, text_mask=None, lowres=None,
    aug_level=None, labels=None, train=False)`` with ``x [B,H,W,C]`` NHWC, ``time [B]`` in
    (0, 1]; ``text_emb [B,L,text_dim]`` for IF (``text_mask`` is accepted and ignored);
    ``labels [B]`` int class ids for a class-conditional ADM (-1: no label); ``lowres [B,H,W,C]`` (already
    at the output resolution) for super-resolution models; ``aug_level [B]`` in [0, 1] for
    IF-II (its noise-level embedding sees the integer step ``round(aug_level * N)`` clipped to
    ``N - 1``: :func:`~synthaug.diffusion_core.aug_step`).
    Returns ``[B,H,W,out_channels]`` float32: eps, then (``out_channels = 2C``) the
    learned-range variance interpolation ``v`` in [-1, 1].

    Attributes:
      attention_resolutions: downsampling factors (1 = full resolution) with attention.
      channel_mult: per-level multipliers of ``model_channels`` (fractional allowed).
      num_res_blocks: an int or one count per level.
      num_heads, num_head_channels: heads per attention block (``num_head_channels > 0``
        derives them from the width); ``num_heads_upsample`` for the decoder (-1: same).
      time_embed_dim: embedding width (None: ``4 * model_channels``).
      num_classes: class-label embedding size (None: unconditional on labels).
      activation: ``"silu"`` (ADM) or ``"gelu"`` (IF).
      efficient_activation: apply the activation once to the summed embedding instead of in
        every res block (IF-II); the same function, another parameterisation of the work.
      resblock_output_scale, mid_output_scale: divisors of the res blocks' sums.
      text_dim, text_channels, text_pool_heads: IF's T5 width, cross-attention width and
        pooling heads (``text_dim=None``: no text path).
      self_attention: False for IF-II's cross-attention-only blocks.
      lowres_channels: channels of the concatenated low-res input (super-resolution).
      aug_embedding: IF-II's noise-level embedding of the augmentation step.
      integer_timesteps, num_timesteps: see the module docstring.
    """

    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 6
    model_channels: int = 192
    channel_mult: Sequence[float] = (1, 2, 3, 4)
    num_res_blocks: int | Sequence[int] = 3
    attention_resolutions: Sequence[int] = (2, 4, 8)
    num_heads: int = 1
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    time_embed_dim: int | None = None
    num_classes: int | None = None
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    activation: str = "silu"
    efficient_activation: bool = False
    resblock_output_scale: float = 1.0
    mid_output_scale: float = 1.0
    text_dim: int | None = None
    text_channels: int | None = None
    text_pool_heads: int = 64
    self_attention: bool = True
    lowres_channels: int = 0
    aug_embedding: bool = False
    integer_timesteps: bool = True
    num_timesteps: int = 1000
    num_groups: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False

    def _steps(self, t):
        t = jnp.asarray(t, jnp.float32)
        if self.integer_timesteps:
            return jnp.round(t * self.num_timesteps) - 1.0
        return t * self.num_timesteps

    def _heads(self, channels: int, upsample: bool = False) -> int:
        if self.num_head_channels > 0:
            return channels // self.num_head_channels
        if upsample and self.num_heads_upsample > 0:
            return self.num_heads_upsample
        return self.num_heads

    @nn.compact
    def __call__(
        self,
        x: Array,
        time: Array,
        text_emb: Array | None = None,
        text_mask: Array | None = None,
        *,
        lowres: Array | None = None,
        aug_level: Array | None = None,
        labels: Array | None = None,
        train: bool = False,
    ) -> Array:
        del text_mask  # IF attends to every token (see the module docstring)
        dt, pdt = self.dtype, self.param_dtype
        b = x.shape[0]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must be [B, H, W, {self.in_channels}], got shape {x.shape}")
        if jnp.shape(time) != (b,):
            raise ValueError(f"time must have shape ({b},), got {jnp.shape(time)}")
        mc = self.model_channels
        mult = tuple(self.channel_mult)
        levels = len(mult)
        nrb = _per_level(self.num_res_blocks, levels, "num_res_blocks")
        act = activation_fn(self.activation)
        emb_dim = self.time_embed_dim or 4 * mc
        freq_dim = int(mult[0] * mc) if self.text_dim is not None else mc

        emb = _MLPEmbedding(emb_dim, freq_dim, self.activation, dt, pdt, name="time_embed")(
            self._steps(time)
        )
        if self.num_classes is not None:
            if labels is None:
                raise ValueError("this model is class-conditional: pass labels [B]")
            labels = jnp.asarray(labels, jnp.int32)
            label_emb = nn.Embed(self.num_classes, emb_dim, param_dtype=pdt, name="label_emb")(
                jnp.maximum(labels, 0)
            ).astype(dt)
            # A negative label is "no label" (the null condition of classifier-free guidance
            # after training with label dropout): no label embedding is added.
            emb = emb + jnp.where((labels >= 0)[:, None], label_emb, jnp.zeros_like(label_emb))
        if self.aug_embedding:
            if aug_level is None:
                raise ValueError("this super-resolution model needs aug_level [B]")
            # the integer step the low-res input was noised at (lowres.aug_step)
            steps = aug_step(aug_level, self.num_timesteps).astype(jnp.float32)
            emb = emb + _MLPEmbedding(
                emb_dim, freq_dim, self.activation, dt, pdt, name="aug_embed"
            )(steps)
        text = None
        if self.text_dim is not None:
            if text_emb is None or text_emb.ndim != 3 or text_emb.shape[-1] != self.text_dim:
                shape = None if text_emb is None else text_emb.shape
                raise ValueError(f"text_emb must be [B, L, {self.text_dim}], got {shape}")
            emb = emb + _TextPooling(emb_dim, self.text_pool_heads, dt, pdt, name="text_pool")(
                text_emb
            )
            text = text_emb.astype(dt)
            if self.text_channels and self.text_channels != self.text_dim:
                text = nn.Dense(self.text_channels, dtype=dt, param_dtype=pdt, name="text_proj")(
                    text
                )
        if self.efficient_activation:
            emb = act(emb)
        if self.lowres_channels:
            if lowres is None or lowres.shape != (*x.shape[:3], self.lowres_channels):
                shape = None if lowres is None else lowres.shape
                raise ValueError(
                    f"lowres must be [B, H, W, {self.lowres_channels}] at the output "
                    f"resolution, got {shape}"
                )
            x = jnp.concatenate([x, lowres.astype(x.dtype)], axis=-1)

        res_cls = nn.remat(_ResBlock) if self.remat else _ResBlock

        def res(out, scale=None, **kw):
            return res_cls(
                out,
                activation=self.activation,
                emb_act=not self.efficient_activation,
                use_scale_shift_norm=self.use_scale_shift_norm,
                output_scale=self.resblock_output_scale if scale is None else scale,
                dropout=self.dropout,
                deterministic=not train,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                **kw,
            )

        def attn(ch, name, upsample=False):
            return _Attention(
                self._heads(ch, upsample),
                self_attention=self.self_attention,
                use_text=text is not None,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                name=name,
            )

        ch = int(mult[0] * mc)
        h = nn.Conv(
            ch, (3, 3), padding=((1, 1), (1, 1)), dtype=dt, param_dtype=pdt, name="conv_in"
        )(x.astype(dt))
        skips = [h]
        ds = 1
        for level, m in enumerate(mult):
            ch = int(m * mc)
            for i in range(nrb[level]):
                h = res(ch, name=f"down_{level}_res_{i}")(h, emb)
                if ds in self.attention_resolutions:
                    h = attn(ch, f"down_{level}_attn_{i}")(h, text)
                skips.append(h)
            if level != levels - 1:
                if self.resblock_updown:
                    h = res(ch, down=True, name=f"down_{level}_downsample")(h, emb)
                else:
                    h = Downsample(ch, dtype=dt, param_dtype=pdt, name=f"down_{level}_downsample")(
                        h
                    )
                ds *= 2
                skips.append(h)

        h = res(ch, scale=self.mid_output_scale, name="mid_res_0")(h, emb)
        h = attn(ch, "mid_attn")(h, text)
        h = res(ch, scale=self.mid_output_scale, name="mid_res_1")(h, emb)

        for level, m in reversed(list(enumerate(mult))):
            ch = int(m * mc)
            for i in range(nrb[level] + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = res(ch, name=f"up_{level}_res_{i}")(h, emb)
                if ds in self.attention_resolutions:
                    h = attn(ch, f"up_{level}_attn_{i}", upsample=True)(h, text)
            if level:
                if self.resblock_updown:
                    h = res(ch, up=True, name=f"up_{level}_upsample")(h, emb)
                else:
                    h = Upsample(ch, dtype=dt, param_dtype=pdt, name=f"up_{level}_upsample")(h)
                ds //= 2

        h = act(_GN(self.num_groups, dt, pdt, name="norm_out")(h))
        out = nn.Conv(
            self.out_channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            dtype=dt,
            param_dtype=pdt,
            kernel_init=nn.initializers.zeros,
            name="conv_out",
        )(h)
        return out.astype(jnp.float32)
