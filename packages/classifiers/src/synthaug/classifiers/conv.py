"""A 2-D convolution whose kernel gradient is computed as matrix products.

XLA's CPU backend lowers the kernel gradient of a convolution (the "backprop filter"
convolution, which contracts over batch and space) to a generic loop nest that runs several
times slower than the forward convolution. For a kernel of size kh×kw the same gradient is
a sum of kh·kw matrix products, one per kernel tap,

    dK[i, j] = X[:, i::s, j::s, :]ᵀ · dY        (both flattened to (N·Ho·Wo, C)),

which XLA runs at matrix-multiply speed. :func:`conv_general_dilated` is a drop-in
replacement for ``jax.lax.conv_general_dilated`` (pass it to ``flax.linen.Conv`` as
``conv_general_dilated``) that uses this formula for NHWC/HWIO convolutions without
dilation or feature groups and the plain XLA convolution for everything else. The forward
pass and the input gradient are XLA's own; the kernel gradient agrees with XLA's to float32
rounding (tested).

``kernel_grad`` selects the route: ``"matmul"``, ``"xla"``, or ``"auto"``: matrix products
on the CPU for 1×1 kernels and for kernels with at least 128 input and output channels
(where XLA's route is 3-18× slower, measured per ResNet-50 layer at batch 8), XLA's
convolution otherwise and on accelerators, where it is fast.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

KERNEL_GRAD_MODES = ("auto", "matmul", "xla")
_NHWC = ("NHWC", "HWIO", "NHWC")


def _use_matmul(mode: str, kernel_shape: Sequence[int]) -> bool:
    if mode not in KERNEL_GRAD_MODES:
        raise ValueError(f"kernel_grad must be one of {list(KERNEL_GRAD_MODES)}, got {mode!r}")
    if mode == "auto":
        # Measured per ResNet-50 conv shape on CPU (batch 8): XLA's kernel gradient is 3-18x
        # slower for 1x1 convs and for 3x3 convs with >= 128 channels; for wide kernels over
        # few channels (the 7x7 stem) the many thin products lose.
        kh, kw, cin, cout = kernel_shape
        wide = min(cin, cout) >= 128
        return jax.default_backend() == "cpu" and (kh * kw == 1 or wide)
    return mode == "matmul"


def _plain(lhs, rhs, strides, padding):
    return lax.conv_general_dilated(lhs, rhs, strides, padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_matmul_grad(lhs, rhs, strides, padding):
    return _plain(lhs, rhs, strides, padding)


def _fwd(lhs, rhs, strides, padding):
    return _plain(lhs, rhs, strides, padding), (lhs, rhs)


def _bwd(strides, padding, residuals, g):
    lhs, rhs = residuals
    _, input_vjp = jax.vjp(lambda x: _plain(x, rhs, strides, padding), lhs)
    (d_lhs,) = input_vjp(g)
    kh, kw, cin, cout = rhs.shape
    n, ho, wo, _ = g.shape
    sh, sw = strides
    xp = jnp.pad(lhs, ((0, 0), padding[0], padding[1], (0, 0)))
    g_t = g.reshape(n * ho * wo, cout).T  # (cout, M): one transpose shared by every tap
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = lax.slice(
                xp,
                (0, i, j, 0),
                (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, cin),
                (1, sh, sw, 1),
            )
            tap = jnp.matmul(
                g_t, window.reshape(n * ho * wo, cin), preferred_element_type=jnp.float32
            )
            taps.append(tap.T)
    d_rhs = jnp.stack(taps).reshape(kh, kw, cin, cout).astype(rhs.dtype)
    return d_lhs, d_rhs


_conv_matmul_grad.defvjp(_fwd, _bwd)


def _explicit_padding(lhs_shape, rhs_shape, strides, padding):
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(lhs_shape[1:3], rhs_shape[0:2], strides, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    *,
    kernel_grad: str = "auto",
) -> jax.Array:
    """``jax.lax.conv_general_dilated`` with a matrix-product kernel gradient (see module doc).

    Args:
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type: as in
        ``jax.lax.conv_general_dilated``.
      kernel_grad: ``"auto"`` (default), ``"matmul"`` or ``"xla"``.

    Returns:
      The convolution output, identical to ``jax.lax.conv_general_dilated``'s.
    """
    simple = (
        lhs.ndim == 4
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    )
    if simple and _use_matmul(kernel_grad, rhs.shape):
        strides = tuple(int(s) for s in window_strides)
        pads = _explicit_padding(lhs.shape, rhs.shape, strides, padding)
        if all(lo >= 0 and hi >= 0 for lo, hi in pads):
            return _conv_matmul_grad(lhs, rhs, strides, pads)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
