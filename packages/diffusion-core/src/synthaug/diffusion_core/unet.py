"""The ADM-style U-Net of the Imagen 64x64 base model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from synthaug.diffusion_core.checks import check_unet_inputs
from synthaug.diffusion_core.layers import (
    AttentionBlock,
    Downsample,
    GroupNorm,
    ResBlock,
    TextConditioning,
    TimestepEmbedding,
    Upsample,
)

Array = jnp.ndarray

__all__ = ["UNet"]


class UNet(nn.Module):
    """ADM U-Net (Dhariwal & Nichol) with Imagen's text conditioning.

    BigGAN-style res blocks with scale-shift norm; self-attention at ``attention_resolutions``
    with the text tokens concatenated to the keys and values at
    ``cross_attention_resolutions``; LayerNorm on the text embeddings and an attention pooling
    of the text added to the time embedding. The text mask is respected everywhere.

    Call: ``model.apply({"params": p}, x, time, text_emb, text_mask, lowres=None,
    aug_level=None, train=False)`` with ``x [B,H,W,C]``, ``time [B]`` in [0, 1],
    ``text_emb [B,L,D]`` (None if ``text_dim`` is None), ``text_mask [B,L]`` bool; a model
    with ``lowres_channels > 0`` also takes the upsampled low-res image and ``aug_level``.
    Returns ``[B,H,W,out_channels]`` in float32.
    """

    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 128
    channel_mult: Sequence[int] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_resolutions: Sequence[int] = (32, 16, 8)
    cross_attention_resolutions: Sequence[int] = (32, 16, 8)
    num_head_channels: int = 64
    num_heads: int | None = None
    text_dim: int | None = None
    text_token_dim: int | None = None
    text_pool_heads: int = 8
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    num_groups: int = 32
    time_scale: float = 1000.0
    lowres_channels: int = 0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False

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
        train: bool = False,
    ) -> Array:
        check_unet_inputs(
            x,
            time,
            text_emb,
            text_mask,
            lowres=lowres,
            aug_level=aug_level,
            in_channels=self.in_channels,
            text_dim=self.text_dim,
            lowres_channels=self.lowres_channels,
            image_size=self.image_size,
        )
        dt, pdt = self.dtype, self.param_dtype
        mc = self.model_channels
        emb_dim = 4 * mc
        emb = TimestepEmbedding(
            emb_dim,
            freq_dim=mc,
            scale=self.time_scale,
            dtype=dt,
            param_dtype=pdt,
            name="time_embed",
        )(time)
        text = None
        if self.text_dim is not None:
            text, pooled = TextConditioning(
                self.text_token_dim or emb_dim,
                emb_dim,
                self.text_pool_heads,
                dt,
                pdt,
                name="text",
            )(text_emb, text_mask)
            emb = emb + pooled
        if self.lowres_channels:
            emb = emb + TimestepEmbedding(
                emb_dim,
                freq_dim=mc,
                scale=self.time_scale,
                dtype=dt,
                param_dtype=pdt,
                name="aug_embed",
            )(aug_level)
            x = jnp.concatenate([x, lowres.astype(x.dtype)], axis=-1)

        res_cls = nn.remat(ResBlock) if self.remat else ResBlock
        attn_cls = nn.remat(AttentionBlock) if self.remat else AttentionBlock

        def res(out, **kw):
            return res_cls(
                out,
                use_scale_shift_norm=self.use_scale_shift_norm,
                dropout=self.dropout,
                deterministic=not train,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                **kw,
            )

        def attn(h, resolution, name):
            use_self = resolution in self.attention_resolutions
            use_text = text is not None and resolution in self.cross_attention_resolutions
            if not (use_self or use_text):
                return h
            return attn_cls(
                self.num_heads,
                self.num_head_channels,
                use_text=use_text,
                self_attention=True,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                name=name,
            )(h, text, text_mask)

        h = nn.Conv(mc * self.channel_mult[0], (3, 3), dtype=dt, param_dtype=pdt, name="conv_in")(
            x.astype(dt)
        )
        skips = [h]
        resolution = self.image_size
        for level, mult in enumerate(self.channel_mult):
            for i in range(self.num_res_blocks):
                h = res(mult * mc, name=f"down_{level}_res_{i}")(h, emb)
                h = attn(h, resolution, f"down_{level}_attn_{i}")
                skips.append(h)
            if level != len(self.channel_mult) - 1:
                if self.resblock_updown:
                    h = res(mult * mc, down=True, name=f"down_{level}_downsample")(h, emb)
                else:
                    h = Downsample(
                        mult * mc, dtype=dt, param_dtype=pdt, name=f"down_{level}_downsample"
                    )(h)
                resolution //= 2
                skips.append(h)

        ch = self.channel_mult[-1] * mc
        h = res(ch, name="mid_res_0")(h, emb)
        h = attn_cls(
            self.num_heads,
            self.num_head_channels,
            use_text=text is not None,
            num_groups=self.num_groups,
            dtype=dt,
            param_dtype=pdt,
            name="mid_attn",
        )(h, text, text_mask)
        h = res(ch, name="mid_res_1")(h, emb)

        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = res(mult * mc, name=f"up_{level}_res_{i}")(h, emb)
                h = attn(h, resolution, f"up_{level}_attn_{i}")
            if level:
                if self.resblock_updown:
                    h = res(mult * mc, up=True, name=f"up_{level}_upsample")(h, emb)
                else:
                    h = Upsample(mult * mc, dtype=dt, param_dtype=pdt, name=f"up_{level}_upsample")(
                        h
                    )
                resolution *= 2

        h = nn.silu(GroupNorm(self.num_groups, dt, pdt, name="norm_out")(h))
        out = nn.Conv(
            self.out_channels,
            (3, 3),
            dtype=dt,
            param_dtype=pdt,
            kernel_init=nn.initializers.zeros,
            name="conv_out",
        )(h)
        return out.astype(jnp.float32)
