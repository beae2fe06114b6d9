"""The Efficient U-Net of Imagen's super-resolution models (Saharia et al. 2022, App. B)."""

from __future__ import annotations

import math
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

__all__ = ["EfficientUNet"]

_SKIP_SCALE = 1.0 / math.sqrt(2.0)


class EfficientUNet(nn.Module):
    """Imagen's Efficient U-Net for super-resolution.

    A stack of blocks, each with its own width (``block_channels``), res-block count
    (``num_res_blocks``), stride (``block_strides``), and optional self-attention
    (``self_attention``) and text cross-attention (``cross_attention``). A down block
    downsamples *before* its convolutions; the matching up block upsamples *after* them.
    Residual sums and the U-Net skip connections are scaled by ``1/sqrt(2)``; with
    ``skip_per_res_block`` every res block of a down block feeds a skip connection to the
    matching res block of the up block, otherwise each block passes one skip connection. The network is
    conditioned on the low-res image (already upsampled to the output resolution,
    concatenated to the input), on the noise-augmentation level (embedded like the time and
    added to the time embedding) and on the text (pooled into the embedding and, where
    ``cross_attention`` is set, attended to).

    Call: ``model.apply({"params": p}, x, time, text_emb, text_mask, lowres=..., aug_level=...,
    train=False)``; returns ``[B,H,W,out_channels]`` in float32.
    """

    image_size: int = 256
    in_channels: int = 3
    out_channels: int = 3
    lowres_channels: int = 3
    initial_channels: int = 128
    block_channels: Sequence[int] = (128, 256, 512, 1024)
    num_res_blocks: Sequence[int] = (2, 4, 8, 8)
    block_strides: Sequence[int] = (2, 2, 2, 2)
    self_attention: Sequence[bool] = (False, False, False, True)
    cross_attention: Sequence[bool] = (False, False, False, True)
    skip_per_res_block: bool = True
    num_heads: int = 8
    embed_dim: int = 512
    text_dim: int | None = None
    text_token_dim: int | None = None
    text_pool_heads: int = 8
    dropout: float = 0.0
    num_groups: int = 32
    time_scale: float = 1000.0
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
        n = len(self.block_channels)
        for name in ("num_res_blocks", "block_strides", "self_attention", "cross_attention"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"EfficientUNet.{name} has {len(getattr(self, name))} entries, expected {n} "
                    "(one per block_channels entry)"
                )
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
        emb = TimestepEmbedding(
            self.embed_dim, scale=self.time_scale, dtype=dt, param_dtype=pdt, name="time_embed"
        )(time)
        emb = emb + TimestepEmbedding(
            self.embed_dim, scale=self.time_scale, dtype=dt, param_dtype=pdt, name="aug_embed"
        )(aug_level)
        text = None
        if self.text_dim is not None:
            text, pooled = TextConditioning(
                self.text_token_dim or self.embed_dim,
                self.embed_dim,
                self.text_pool_heads,
                dt,
                pdt,
                name="text",
            )(text_emb, text_mask)
            emb = emb + pooled

        res_cls = nn.remat(ResBlock) if self.remat else ResBlock
        attn_cls = nn.remat(AttentionBlock) if self.remat else AttentionBlock

        def res(out, name):
            return res_cls(
                out,
                use_scale_shift_norm=True,
                dropout=self.dropout,
                deterministic=not train,
                skip_scale=_SKIP_SCALE,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                name=name,
            )

        def attn(h, i, name):
            use_text = text is not None and self.cross_attention[i]
            if not (self.self_attention[i] or use_text):
                return h
            return attn_cls(
                self.num_heads,
                use_text=use_text,
                self_attention=self.self_attention[i],
                skip_scale=_SKIP_SCALE,
                num_groups=self.num_groups,
                dtype=dt,
                param_dtype=pdt,
                name=name,
            )(h, text, text_mask)

        h = jnp.concatenate([x, lowres.astype(x.dtype)], axis=-1).astype(dt)
        h = nn.Conv(self.initial_channels, (3, 3), dtype=dt, param_dtype=pdt, name="conv_in")(h)
        skips = []
        for i, ch in enumerate(self.block_channels):
            if self.block_strides[i] == 2:
                h = Downsample(ch, dtype=dt, param_dtype=pdt, name=f"down_{i}_downsample")(h)
            elif self.block_strides[i] != 1:
                raise ValueError(f"block_strides must be 1 or 2, got {self.block_strides}")
            for j in range(self.num_res_blocks[i]):
                h = res(ch, f"down_{i}_res_{j}")(h, emb)
                if self.skip_per_res_block and j < self.num_res_blocks[i] - 1:
                    skips.append(h)
            h = attn(h, i, f"down_{i}_attn")
            skips.append(h)

        for i in reversed(range(n)):
            ch = self.block_channels[i]
            for j in range(self.num_res_blocks[i]):
                if j == 0 or self.skip_per_res_block:
                    h = jnp.concatenate([h, skips.pop() * _SKIP_SCALE], axis=-1)
                h = res(ch, f"up_{i}_res_{j}")(h, emb)
            h = attn(h, i, f"up_{i}_attn")
            if self.block_strides[i] == 2:
                out_ch = self.block_channels[i - 1] if i else self.initial_channels
                h = Upsample(out_ch, dtype=dt, param_dtype=pdt, name=f"up_{i}_upsample")(h)

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
