"""ResNet v1.5 (torchvision layout) and ResNet-RS options, as Flax Linen modules.

The module and parameter names follow the torchvision ``state_dict`` (``conv1``, ``bn1``,
``layer1_0/conv1`` ... ``fc``) so that imported weights map one to one. ResNet v1.5 puts the
stride of a bottleneck block on its 3x3 convolution. Padding is symmetric, as in PyTorch,
so the same weights give the same logits.

ResNet-RS options (Bello et al. 2021, timm ``resnetrs*`` layout): a deep 3-conv stem
(``stem_type="deep"``), the stem max-pool replaced by a strided conv
(``replace_stem_pool``), average-pool shortcuts (``avg_down``) and squeeze-excitation
(``se_ratio``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthaug.classifiers.conv import conv_general_dilated

# torchvision BatchNorm2d: eps 1e-5, running-average momentum 0.1 (flax momentum 0.9).
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    p = (k - 1) // 2
    return ((p, p), (p, p))


def _make_divisible(v: float, divisor: int = 8) -> int:
    """timm's ``make_divisible`` with ``round_limit=0``."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def _conv(features, kernel, stride=1, *, name, dtype=jnp.float32, use_bias=False):
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=_pad(kernel),
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        conv_general_dilated=conv_general_dilated,
        name=name,
    )


def _bn(train: bool, *, name: str, zero_init: bool = False, dtype=jnp.float32):
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=_BN_MOMENTUM,
        epsilon=_BN_EPS,
        dtype=dtype,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
        name=name,
    )


def _drop_path(x, rate: float, deterministic: bool, rng_module: nn.Module):
    """Stochastic depth: drop the whole residual branch per example."""
    if deterministic or rate == 0.0:
        return x
    keep = 1.0 - rate
    rng = rng_module.make_rng("dropout")
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class SqueezeExcite(nn.Module):
    """timm ``SEModule``: 1x1 convs with bias, ReLU, sigmoid gate."""

    channels: int
    ratio: float = 0.25
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        rd = _make_divisible(self.channels * self.ratio, 8)
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.Conv(rd, (1, 1), use_bias=True, dtype=self.dtype, name="fc1")(s)
        s = nn.relu(s)
        s = nn.Conv(self.channels, (1, 1), use_bias=True, dtype=self.dtype, name="fc2")(s)
        return x * nn.sigmoid(s)


class _Shortcut(nn.Module):
    features: int
    stride: int
    avg_down: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        if self.avg_down:
            if self.stride > 1:
                # AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                h, w = x.shape[1], x.shape[2]
                ph, pw = (-h) % self.stride, (-w) % self.stride
                x = nn.avg_pool(
                    x,
                    (2, 2),
                    strides=(self.stride, self.stride),
                    padding=((0, ph), (0, pw)),
                    count_include_pad=False,
                )
            x = _conv(self.features, 1, 1, name="conv", dtype=self.dtype)(x)
        else:
            x = _conv(self.features, 1, self.stride, name="conv", dtype=self.dtype)(x)
        return _bn(train, name="bn", dtype=self.dtype)(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    avg_down: bool = False
    se_ratio: float = 0.0
    drop_path: float = 0.0
    zero_init_last: bool = False
    dtype: jnp.dtype = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        out = _conv(self.planes, 3, self.stride, name="conv1", dtype=self.dtype)(x)
        out = nn.relu(_bn(train, name="bn1", dtype=self.dtype)(out))
        out = _conv(self.planes, 3, 1, name="conv2", dtype=self.dtype)(out)
        out = _bn(train, name="bn2", zero_init=self.zero_init_last, dtype=self.dtype)(out)
        if self.se_ratio:
            out = SqueezeExcite(self.planes, self.se_ratio, self.dtype, name="se")(out)
        if self.downsample:
            x = _Shortcut(self.planes, self.stride, self.avg_down, self.dtype, name="downsample")(
                x, train
            )
        out = _drop_path(out, self.drop_path, not train, self)
        return nn.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4 bottleneck (ResNet-50/101/152)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    avg_down: bool = False
    se_ratio: float = 0.0
    drop_path: float = 0.0
    zero_init_last: bool = False
    dtype: jnp.dtype = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        out_ch = self.planes * self.expansion
        out = _conv(self.planes, 1, 1, name="conv1", dtype=self.dtype)(x)
        out = nn.relu(_bn(train, name="bn1", dtype=self.dtype)(out))
        out = _conv(self.planes, 3, self.stride, name="conv2", dtype=self.dtype)(out)
        out = nn.relu(_bn(train, name="bn2", dtype=self.dtype)(out))
        out = _conv(out_ch, 1, 1, name="conv3", dtype=self.dtype)(out)
        out = _bn(train, name="bn3", zero_init=self.zero_init_last, dtype=self.dtype)(out)
        if self.se_ratio:
            out = SqueezeExcite(out_ch, self.se_ratio, self.dtype, name="se")(out)
        if self.downsample:
            x = _Shortcut(out_ch, self.stride, self.avg_down, self.dtype, name="downsample")(
                x, train
            )
        out = _drop_path(out, self.drop_path, not train, self)
        return nn.relu(out + x)


class ResNet(nn.Module):
    """ResNet v1.5 with optional ResNet-RS changes.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
      block: ``"basic"`` or ``"bottleneck"``.
      num_classes: size of the classifier head.
      widths: planes per stage (torchvision: 64, 128, 256, 512).
      stem_width: channels after the stem (torchvision: 64).
      stem_type: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool), ``"deep"`` (three 3x3
        convs, the first strided, then the max-pool or its replacement) or ``"cifar"``
        (one 3x3/1 conv, no pooling: for 32x32 inputs).
      replace_stem_pool: replace the stem max-pool by a strided 3x3 conv + BN + ReLU.
      avg_down: average-pool then 1x1 conv in the strided shortcuts.
      se_ratio: squeeze-excitation reduction ratio (0 = off).
      drop_path_rate: stochastic depth, linearly increasing over the blocks.
      zero_init_last: initialise the last BN scale of each block to zero.
      dtype: computation dtype.
    """

    stage_sizes: Sequence[int]
    block: str = "bottleneck"
    num_classes: int = 1000
    widths: Sequence[int] = (64, 128, 256, 512)
    stem_width: int = 64
    stem_type: str = "imagenet"
    replace_stem_pool: bool = False
    avg_down: bool = False
    se_ratio: float = 0.0
    drop_path_rate: float = 0.0
    zero_init_last: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False, return_features: bool = False):
        """Logits (or pooled penultimate features) for NHWC images.

        Args:
          x: float images ``[B, H, W, 3]``, already normalised.
          train: batch statistics and stochastic depth when True.
          return_features: return the globally pooled features ``[B, C]`` instead of logits.

        Returns:
          ``[B, num_classes]`` logits, or ``[B, C]`` features.
        """
        if x.ndim != 4:
            raise ValueError(f"ResNet input must be [B, H, W, C], got shape {x.shape}")
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        x = x.astype(self.dtype)
        if self.stem_type == "imagenet":
            x = _conv(self.stem_width, 7, 2, name="conv1", dtype=self.dtype)(x)
        elif self.stem_type == "deep":
            sw = self.stem_width // 2
            x = _conv(sw, 3, 2, name="conv1_0", dtype=self.dtype)(x)
            x = nn.relu(_bn(train, name="conv1_1", dtype=self.dtype)(x))
            x = _conv(sw, 3, 1, name="conv1_3", dtype=self.dtype)(x)
            x = nn.relu(_bn(train, name="conv1_4", dtype=self.dtype)(x))
            x = _conv(self.stem_width, 3, 1, name="conv1_6", dtype=self.dtype)(x)
        elif self.stem_type == "cifar":
            x = _conv(self.stem_width, 3, 1, name="conv1", dtype=self.dtype)(x)
        else:
            raise ValueError(
                f"stem_type must be 'imagenet', 'deep' or 'cifar', got {self.stem_type!r}"
            )
        x = nn.relu(_bn(train, name="bn1", dtype=self.dtype)(x))
        if self.stem_type != "cifar":
            if self.replace_stem_pool:
                x = _conv(self.stem_width, 3, 2, name="maxpool_0", dtype=self.dtype)(x)
                x = nn.relu(_bn(train, name="maxpool_1", dtype=self.dtype)(x))
            else:
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_ch = self.stem_width
        total = sum(self.stage_sizes)
        idx = 0
        for i, (n, planes) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                out_ch = planes * block_cls.expansion
                dpr = self.drop_path_rate * idx / max(total - 1, 1)
                x = block_cls(
                    planes=planes,
                    stride=stride,
                    downsample=(stride != 1 or in_ch != out_ch),
                    avg_down=self.avg_down,
                    se_ratio=self.se_ratio,
                    drop_path=dpr,
                    zero_init_last=self.zero_init_last,
                    dtype=self.dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, train)
                in_ch = out_ch
                idx += 1
        x = jnp.mean(x, axis=(1, 2))
        if return_features:
            return x.astype(jnp.float32)
        # The head computes in ``dtype`` too; the logits are float32 for the loss.
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)
