"""Vision Transformer (timm ``VisionTransformer`` layout) and the DeiT distillation variant.

Names follow timm's ``state_dict`` (``patch_embed``, ``cls_token``, ``pos_embed``,
``blocks_{i}/{norm1,attn/qkv,attn/proj,norm2,mlp/fc1,mlp/fc2}``, ``norm``, ``head``) so
imported weights map one to one. LayerNorm eps is 1e-6 and the MLP uses the exact (erf)
GELU, as in timm and torchvision.

big_vision's ImageNet ViT (``big_vision/models/vit.py`` with ``pool_type="gap"``,
``posemb="sincos2d"``, ``rep_size=True``, zero-initialised head, tanh-approximate GELU) is
the same module with ``pool_type="gap", posemb="sincos2d", rep_size=True,
head_zeroinit=True, gelu_approximate=True``: no class token, fixed 2-D sin-cos position
embeddings, the mean of the final-norm tokens through a ``pre_logits`` Dense + tanh.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_trunc02 = nn.initializers.truncated_normal(stddev=0.02)


def _layer_norm(name, dtype):
    return nn.LayerNorm(epsilon=1e-6, dtype=dtype, name=name)


def _dense(features, name, dtype):
    return nn.Dense(
        features, dtype=dtype, kernel_init=_trunc02, bias_init=nn.initializers.zeros, name=name
    )


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm layout)."""

    dim: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, n, d = x.shape
        hd = d // self.num_heads
        qkv = _dense(3 * d, "qkv", self.dtype)(x)
        qkv = qkv.reshape(b, n, 3, self.num_heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [b, n, h, hd]
        attn = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (hd**-0.5)
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, d)
        return _dense(d, "proj", self.dtype)(out)


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0):
    """big_vision's fixed 2-D sin-cos position embedding ``[1, h * w, width]`` (MoCo v3)."""
    if width % 4:
        raise ValueError(f"sincos2d position embedding needs a width divisible by 4, got {width}")
    y, x = jnp.mgrid[:h, :w]
    omega = jnp.arange(width // 4) / (width // 4 - 1)
    omega = 1.0 / (temperature**omega)
    y = jnp.einsum("m,d->md", y.flatten(), omega)
    x = jnp.einsum("m,d->md", x.flatten(), omega)
    pe = jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)
    return pe[None].astype(jnp.float32)


class Mlp(nn.Module):
    hidden: int
    dim: int
    dtype: jnp.dtype = jnp.float32
    gelu_approximate: bool = False

    @nn.compact
    def __call__(self, x):
        x = _dense(self.hidden, "fc1", self.dtype)(x)
        x = nn.gelu(x, approximate=self.gelu_approximate)
        return _dense(self.dim, "fc2", self.dtype)(x)


class Block(nn.Module):
    dim: int
    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    dtype: jnp.dtype = jnp.float32
    gelu_approximate: bool = False

    def _drop(self, x, deterministic):
        if deterministic or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0], 1, 1))
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)

    @nn.compact
    def __call__(self, x, deterministic: bool):
        y = Attention(self.dim, self.num_heads, self.dtype, name="attn")(
            _layer_norm("norm1", self.dtype)(x)
        )
        x = x + self._drop(y, deterministic)
        y = Mlp(
            int(self.dim * self.mlp_ratio), self.dim, self.dtype, self.gelu_approximate, name="mlp"
        )(_layer_norm("norm2", self.dtype)(x))
        return x + self._drop(y, deterministic)


class VisionTransformer(nn.Module):
    """ViT / DeiT.

    Attributes:
      num_classes: head size.
      image_size: input side (sets the length of ``pos_embed``).
      patch_size: patch side.
      embed_dim, depth, num_heads, mlp_ratio: transformer size.
      distilled: add the DeiT distillation token and ``head_dist``; the output is the mean
        of both heads (use ``return_both`` for the pair).
      drop_path_rate: stochastic depth, linearly increasing over the blocks.
      pool_type: ``"token"`` (the class token, timm/DeiT) or ``"gap"`` (the mean of the
        final-norm patch tokens and no class token, big_vision).
      posemb: ``"learned"`` (``pos_embed`` parameter) or ``"sincos2d"`` (fixed).
      rep_size: a ``pre_logits`` Dense + tanh before the head (``True``: ``embed_dim``
        units; 0/False: none).
      head_zeroinit: initialise the head's kernel to zeros (big_vision).
      gelu_approximate: tanh-approximate GELU in the MLPs (big_vision, flax's default).
      dtype: computation dtype (activations, matmuls); parameters stay float32 and the
        logits are float32.
    """

    num_classes: int = 1000
    image_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    distilled: bool = False
    drop_path_rate: float = 0.0
    pool_type: str = "token"
    posemb: str = "learned"
    rep_size: int | bool = 0
    head_zeroinit: bool = False
    gelu_approximate: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x, train: bool = False, return_features: bool = False, return_both: bool = False
    ):
        """Logits (or the final-norm class token) for NHWC images.

        Args:
          x: float images ``[B, image_size, image_size, 3]``, already normalised.
          train: stochastic depth when True.
          return_features: return the pooled features ``[B, embed_dim]`` (float32; after
            ``pre_logits`` when there is one).
          return_both: with ``distilled``, return ``(class_logits, dist_logits)``.

        Returns:
          ``[B, num_classes]`` logits, or features.
        """
        if x.ndim != 4 or x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            raise ValueError(
                f"ViT input must be [B, {self.image_size}, {self.image_size}, C], got {x.shape}"
            )
        p = self.patch_size
        x = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            kernel_init=nn.initializers.lecun_normal(),
            name="patch_embed",
        )(x.astype(self.dtype))
        if self.pool_type not in ("token", "gap"):
            raise ValueError(f"pool_type must be 'token' or 'gap', got {self.pool_type!r}")
        if self.posemb not in ("learned", "sincos2d"):
            raise ValueError(f"posemb must be 'learned' or 'sincos2d', got {self.posemb!r}")
        if self.distilled and self.pool_type != "token":
            raise ValueError("a distilled ViT pools its class and distillation tokens")
        b, gh, gw = x.shape[:3]
        x = x.reshape(b, -1, self.embed_dim)
        tokens = []
        if self.pool_type == "token":
            cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, self.embed_dim))
            tokens.append(jnp.broadcast_to(cls, (b, 1, self.embed_dim)).astype(self.dtype))
        if self.distilled:
            dist = self.param("dist_token", _trunc02, (1, 1, self.embed_dim))
            tokens.append(jnp.broadcast_to(dist, (b, 1, self.embed_dim)).astype(self.dtype))
        if self.posemb == "learned":
            pos = self.param("pos_embed", _trunc02, (1, gh * gw + len(tokens), self.embed_dim))
            x = jnp.concatenate(tokens + [x], axis=1) + pos.astype(self.dtype)
        else:
            x = x + posemb_sincos_2d(gh, gw, self.embed_dim).astype(self.dtype)
            x = jnp.concatenate(tokens + [x], axis=1)
        for i in range(self.depth):
            dpr = self.drop_path_rate * i / max(self.depth - 1, 1)
            x = Block(
                self.embed_dim,
                self.num_heads,
                self.mlp_ratio,
                dpr,
                self.dtype,
                self.gelu_approximate,
                name=f"blocks_{i}",
            )(x, not train)
        x = _layer_norm("norm", self.dtype)(x)
        pooled = jnp.mean(x, axis=1) if self.pool_type == "gap" else x[:, 0]
        if self.rep_size:
            rep = self.embed_dim if self.rep_size is True else int(self.rep_size)
            pooled = jnp.tanh(nn.Dense(rep, dtype=self.dtype, name="pre_logits")(pooled))
        if return_features:
            return pooled.astype(jnp.float32)
        head_init = nn.initializers.zeros if self.head_zeroinit else _trunc02
        head = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=head_init, name="head")
        logits = head(pooled).astype(jnp.float32)
        if not self.distilled:
            return logits
        head_dist = nn.Dense(
            self.num_classes, dtype=self.dtype, kernel_init=_trunc02, name="head_dist"
        )(x[:, 1]).astype(jnp.float32)
        if return_both:
            return logits, head_dist
        return (logits + head_dist) / 2
