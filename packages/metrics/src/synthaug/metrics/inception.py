"""The FID Inception-v3 network (TF 2015-12-05 graph as ported by pytorch-fid) in Flax Linen.

Layer for layer the network of ``pytorch_fid.inception.fid_inception_v3``: torchvision's
Inception-v3 stem and B/D blocks, the FID variants of the A/C/E blocks (3x3 average pools that
exclude the zero padding from the count, and a 3x3 max pool in the branch pool of the last E
block), global average pooling to the 2048-d "pool3" features, and the 1008-way linear
classifier of the TF graph. Inputs are resized to 299x299 with bilinear interpolation
(``align_corners=False``, no antialiasing, exactly ``torch.nn.functional.interpolate``) and
mapped from [0, 1] to [-1, 1].

Every conv layer is followed by batch norm (eps 1e-3) and ReLU in the reference; the batch
norm is folded into the conv kernel and a bias when weights are imported, so the module holds
``kernel`` (HWIO) and ``bias`` per conv layer and runs in NHWC.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.io import read_state_dict

__all__ = [
    "FIDInception",
    "FID_WEIGHTS_FILENAME",
    "StateDictError",
    "convert_fid_state_dict",
    "fid_inception_torch_shapes",
    "load_fid_inception",
    "make_feature_fn",
    "resize_bilinear",
]

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
BN_EPS = 1e-3
INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_LOGITS = 1008


class StateDictError(KeyError):
    """A state dict lacks a key the network needs, or holds one it does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows of weights of ``F.interpolate(mode='bilinear', align_corners=False)`` along one axis."""
    scale = np.float32(n_in / n_out)
    dst = np.arange(n_out, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam1 = (src - i0.astype(np.float32)).astype(np.float32)
    lam0 = np.float32(1.0) - lam1
    m = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), lam0)
    np.add.at(m, (rows, i1), lam1)
    return m


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """Bilinear resize of NHWC images to ``size`` x ``size``, as ``F.interpolate`` does it.

    ``align_corners=False`` and no antialiasing (unlike ``jax.image.resize``, which
    antialiases when it shrinks).

    Args:
      x: float array [N, H, W, C].
      size: output height and width.

    Returns:
      float array [N, size, size, C].
    """
    chex.assert_rank(x, 4)
    _, h, w, _ = x.shape
    if h == size and w == size:
        return x
    rh = jnp.asarray(_interp_matrix(h, size))
    rw = jnp.asarray(_interp_matrix(w, size))
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rh, x, precision=hi)
    return jnp.einsum("pw,nowc->nopc", rw, x, precision=hi)


def _avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
    """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`` in NHWC."""
    s = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    _, h, w, _ = x.shape

    def counts(n):
        i = np.arange(n)
        return (np.minimum(i + 1, n - 1) - np.maximum(i - 1, 0) + 1).astype(np.float32)

    inv = 1.0 / (counts(h)[:, None] * counts(w)[None, :])
    return s * jnp.asarray(inv, x.dtype)[None, :, :, None]


def _max_pool(x: jax.Array, window: int, stride: int, pad: int) -> jax.Array:
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        ((0, 0), (pad, pad), (pad, pad), (0, 0)),
    )


class ConvReLU(nn.Module):
    """conv (batch norm folded into kernel and bias) + ReLU, the pytorch-fid BasicConv2d."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def kernel_shape(self, in_features: int) -> tuple[int, int, int, int]:
        return (*self.kernel_size, in_features, self.features)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), self.kernel_shape(x.shape[-1]), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return _conv_relu(x, kernel, bias, self.strides, self.padding)


def _conv_relu(x, kernel, bias, strides, padding):
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=strides,
        padding=((padding[0], padding[0]), (padding[1], padding[1])),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return jax.nn.relu(y + bias.astype(x.dtype))


class Linear(nn.Module):
    """``y = x @ kernel (+ bias)``; the bias parameter exists either way."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        y = jnp.dot(x, kernel, precision=jax.lax.Precision.HIGHEST)
        return y + bias if self.use_bias else y


class _Block(nn.Module):
    """Base for the mixed blocks: 1x1 convs that read the same input run as one conv."""

    fuse_1x1: bool = True

    def fused_1x1(self, x: jax.Array, convs: Sequence[ConvReLU]) -> list[jax.Array]:
        if not self.fuse_1x1:
            return [c(x) for c in convs]
        # Create the parameters under each conv's own name, then run one wider conv.
        if self.is_initializing():
            return [c(x) for c in convs]
        kernels = [c.variables["params"]["kernel"] for c in convs]
        biases = [c.variables["params"]["bias"] for c in convs]
        y = _conv_relu(
            x, jnp.concatenate(kernels, axis=-1), jnp.concatenate(biases), (1, 1), (0, 0)
        )
        splits = np.cumsum([c.features for c in convs])[:-1]
        return jnp.split(y, splits, axis=-1)


class InceptionA(_Block):
    pool_features: int = 32

    @nn.compact
    def __call__(self, x):
        b1, b5, b3 = self.fused_1x1(
            x,
            [
                ConvReLU(64, name="branch1x1"),
                ConvReLU(48, name="branch5x5_1"),
                ConvReLU(64, name="branch3x3dbl_1"),
            ],
        )
        b5 = ConvReLU(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = ConvReLU(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = ConvReLU(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = ConvReLU(self.pool_features, name="branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    @nn.compact
    def __call__(self, x):
        b3 = ConvReLU(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        bd = ConvReLU(64, name="branch3x3dbl_1")(x)
        bd = ConvReLU(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = ConvReLU(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
        bp = _max_pool(x, 3, 2, 0)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(_Block):
    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1, b7, bd = self.fused_1x1(
            x,
            [
                ConvReLU(192, name="branch1x1"),
                ConvReLU(c7, name="branch7x7_1"),
                ConvReLU(c7, name="branch7x7dbl_1"),
            ],
        )
        b7 = ConvReLU(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = ConvReLU(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = ConvReLU(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = ConvReLU(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = ConvReLU(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = ConvReLU(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = ConvReLU(192, name="branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    @nn.compact
    def __call__(self, x):
        b3, b7 = self.fused_1x1(
            x, [ConvReLU(192, name="branch3x3_1"), ConvReLU(192, name="branch7x7x3_1")]
        )
        b3 = ConvReLU(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
        b7 = ConvReLU(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = ConvReLU(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = ConvReLU(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
        bp = _max_pool(x, 3, 2, 0)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(_Block):
    """The E block; ``pool='max'`` is the FID graph's last block (FIDInceptionE_2)."""

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        b1, b3, bd = self.fused_1x1(
            x,
            [
                ConvReLU(320, name="branch1x1"),
                ConvReLU(384, name="branch3x3_1"),
                ConvReLU(448, name="branch3x3dbl_1"),
            ],
        )
        b3 = jnp.concatenate(
            [
                ConvReLU(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                ConvReLU(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = ConvReLU(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                ConvReLU(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                ConvReLU(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.pool == "max":
            pooled = _max_pool(x, 3, 1, 1)
        elif self.pool == "avg":
            pooled = _avg_pool_3x3_exclude_pad(x)
        else:
            raise ValueError(f"InceptionE.pool must be 'avg' or 'max', got {self.pool!r}")
        bp = ConvReLU(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInception(nn.Module):
    """The FID Inception-v3: images in [0, 1] -> (pool3 features [N, 2048], logits [N, 1008]).

    Attributes:
      resize_input: resize inputs to 299x299 as pytorch-fid does (bilinear, no antialias).
      normalize_input: map inputs from [0, 1] to [-1, 1] (``2 * x - 1``).
      fuse_1x1: run the 1x1 convs of a block that read the same input as one conv (same
        numbers, fewer and larger matmuls).
      logits_bias: add the classifier bias to the logits. The Inception Score of the
        published tables (improved-GAN code, ADM evaluator) uses ``pool3 @ W`` without it.
    """

    resize_input: bool = True
    normalize_input: bool = True
    fuse_1x1: bool = True
    logits_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Args:
          x: float images [N, H, W, 3] with values in [0, 1].

        Returns:
          (pool3 [N, 2048], logits [N, 1008]), float32.
        """
        chex.assert_rank(x, 4)
        if x.shape[-1] != 3:
            raise ValueError(f"FIDInception input must be [N, H, W, 3] images, got {x.shape}")
        x = x.astype(jnp.float32)
        if self.resize_input:
            x = resize_bilinear(x, INPUT_SIZE)
        if self.normalize_input:
            x = 2.0 * x - 1.0
        f = self.fuse_1x1
        x = ConvReLU(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
        x = ConvReLU(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = ConvReLU(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x, 3, 2, 0)
        x = ConvReLU(80, name="Conv2d_3b_1x1")(x)
        x = ConvReLU(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x, 3, 2, 0)
        x = InceptionA(f, pool_features=32, name="Mixed_5b")(x)
        x = InceptionA(f, pool_features=64, name="Mixed_5c")(x)
        x = InceptionA(f, pool_features=64, name="Mixed_5d")(x)
        x = InceptionB(f, name="Mixed_6a")(x)
        x = InceptionC(f, channels_7x7=128, name="Mixed_6b")(x)
        x = InceptionC(f, channels_7x7=160, name="Mixed_6c")(x)
        x = InceptionC(f, channels_7x7=160, name="Mixed_6d")(x)
        x = InceptionC(f, channels_7x7=192, name="Mixed_6e")(x)
        x = InceptionD(f, name="Mixed_7a")(x)
        x = InceptionE(f, pool="avg", name="Mixed_7b")(x)
        x = InceptionE(f, pool="max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = Linear(NUM_LOGITS, use_bias=self.logits_bias, name="fc")(pool3)
        return pool3, logits


@functools.cache
def _param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    shapes = jax.eval_shape(
        lambda: FIDInception().init(jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    )
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    return {tuple(k.key for k in path): tuple(v.shape) for path, v in flat}


def fid_inception_torch_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """The float entries of pytorch-fid's FID Inception state dict, with their shapes.

    Returns:
      ``(key, shape)`` pairs in PyTorch naming (``Mixed_5b.branch1x1.conv.weight``, ...,
      ``fc.weight``), sorted by key; ``num_batches_tracked`` entries are not listed.
    """
    out = []
    for path, shape in _param_shapes().items():
        prefix = ".".join(path[:-1])
        if path[0] == "fc":
            if path[-1] == "kernel":
                out.append(("fc.weight", (shape[1], shape[0])))
            else:
                out.append(("fc.bias", shape))
        elif path[-1] == "kernel":
            kh, kw, cin, cout = shape
            out.append((f"{prefix}.conv.weight", (cout, cin, kh, kw)))
            for s in ("weight", "bias", "running_mean", "running_var"):
                out.append((f"{prefix}.bn.{s}", (cout,)))
    return sorted(out)


def convert_fid_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a pytorch-fid FID Inception state dict to :class:`FIDInception` params.

    Batch norm (eps 1e-3) is folded into each conv: ``kernel = W * g / sqrt(v + eps)``,
    ``bias = b - m * g / sqrt(v + eps)``, computed in float64 and stored as float32 HWIO.

    Args:
      state_dict: key -> array, as read by :func:`synthaug.io.read_state_dict`
        (``num_batches_tracked`` entries are ignored).

    Returns:
      The params pytree ``{"Conv2d_1a_3x3": {"kernel", "bias"}, ..., "fc": {...}}``.

    Raises:
      StateDictError: a key is missing or unknown.
      ValueError: an entry has the wrong shape.
    """
    expected = dict(fid_inception_torch_shapes())
    given = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(given))
    unknown = sorted(set(given) - set(expected))
    if missing:
        raise StateDictError(
            f"FID Inception state dict lacks {len(missing)} entries, e.g. {missing[:3]}"
        )
    if unknown:
        raise StateDictError(
            f"FID Inception state dict has {len(unknown)} unknown entries, e.g. {unknown[:3]}"
        )
    arrays = {}
    for k, shape in expected.items():
        a = np.asarray(given[k], dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"state dict entry {k!r} has shape {a.shape}, expected {shape}")
        arrays[k] = a
    params: dict[str, Any] = {}
    for path in _param_shapes():
        if path[-1] != "kernel":
            continue
        node = params
        for p in path[:-2]:
            node = node.setdefault(p, {})
        if path[0] == "fc":
            node["fc"] = {
                "kernel": arrays["fc.weight"].T.astype(np.float32),
                "bias": arrays["fc.bias"].astype(np.float32),
            }
            continue
        prefix = ".".join(path[:-1])
        w = arrays[f"{prefix}.conv.weight"]
        scale = arrays[f"{prefix}.bn.weight"] / np.sqrt(arrays[f"{prefix}.bn.running_var"] + BN_EPS)
        bias = arrays[f"{prefix}.bn.bias"] - arrays[f"{prefix}.bn.running_mean"] * scale
        kernel = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0)
        node[path[-2]] = {
            "kernel": np.ascontiguousarray(kernel, dtype=np.float32),
            "bias": bias.astype(np.float32),
        }
    return params


def load_fid_inception(path: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Loads FID Inception weights for :class:`FIDInception`.

    Args:
      path: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (or any file in that
        state-dict format, zip or legacy PyTorch layout), or an already-read state dict.

    Returns:
      The params pytree (batch norm folded into the convs), as NumPy float32 arrays.

    Raises:
      FileNotFoundError: the file does not exist.
      synthaug.io.WeightsFileError: the file is not a PyTorch state dict, or its pickle names
        anything but tensors (nothing in it runs).
      StateDictError, ValueError: the file is not an FID Inception state dict.
    """
    if isinstance(path, Mapping):
        return convert_fid_state_dict(path)
    return convert_fid_state_dict(read_state_dict(path))


def make_feature_fn(
    params: Mapping[str, Any],
    *,
    batch_size: int = 64,
    fuse_1x1: bool = True,
    logits_bias: bool = True,
) -> Callable[[Any], tuple[jax.Array, jax.Array]]:
    """Builds a jitted feature extractor over any number of images.

    Args:
      params: from :func:`load_fid_inception`.
      batch_size: images per compiled call; larger inputs are processed in chunks of this
        size (the last, smaller chunk compiles once more).
      fuse_1x1: see :class:`FIDInception`.
      logits_bias: add the classifier bias to the logits; pass False for the logits of the
        published Inception Scores (see :func:`synthaug.metrics.inception_score`).

    Returns:
      ``fn(images) -> (pool3 [N, 2048], logits [N, 1008])`` (float32 JAX arrays), where
      ``images`` is [N, H, W, 3] uint8 (0..255) or float in [0, 1]; any H, W (resized to 299).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = FIDInception(fuse_1x1=fuse_1x1, logits_bias=logits_bias)
    device_params = jax.device_put({"params": params})

    @jax.jit
    def forward(variables, images):
        if images.dtype == jnp.uint8:
            x = images.astype(jnp.float32) / 255.0
        else:
            x = images.astype(jnp.float32)
        return model.apply(variables, x)

    def fn(images):
        images = jnp.asarray(images) if not isinstance(images, np.ndarray) else images
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got shape {tuple(images.shape)}")
        if not (images.dtype == np.uint8 or jnp.issubdtype(images.dtype, jnp.floating)):
            raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        n = images.shape[0]
        if n <= batch_size:
            return forward(device_params, images)
        outs = [forward(device_params, images[i : i + batch_size]) for i in range(0, n, batch_size)]
        return (
            jnp.concatenate([o[0] for o in outs]),
            jnp.concatenate([o[1] for o in outs]),
        )

    return fn
