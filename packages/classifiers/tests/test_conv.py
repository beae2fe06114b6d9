"""The matrix-product kernel gradient equals XLA's convolution gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from synthaug.classifiers import get_model
from synthaug.classifiers.conv import conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")

CASES = [
    # kernel, stride, padding, in channels, out channels, image size
    (3, 1, ((1, 1), (1, 1)), 5, 7, 9),
    (3, 2, ((1, 1), (1, 1)), 4, 6, 10),
    (1, 2, ((0, 0), (0, 0)), 4, 6, 9),
    (7, 2, ((3, 3), (3, 3)), 3, 8, 17),
    (3, 1, "SAME", 4, 4, 8),
    (3, 2, "VALID", 4, 4, 9),
    (2, 2, ((0, 1), (1, 0)), 3, 5, 7),
]


def _loss(conv, strides, padding, x, w):
    dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    y = conv(x, w, strides, padding, dimension_numbers=dn)
    return jnp.sum(y * jnp.sin(y))


@pytest.mark.parametrize("kernel,stride,padding,cin,cout,size", CASES)
def test_gradients_equal_xla(kernel, stride, padding, cin, cout, size):
    rng = np.random.default_rng(kernel * 100 + size)
    x = jnp.asarray(rng.normal(size=(2, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
    s = (stride, stride)
    ref_y = lax.conv_general_dilated(x, w, s, padding, dimension_numbers=NHWC)
    ours = functools.partial(conv_general_dilated, kernel_grad="matmul")
    y = ours(x, w, s, padding, dimension_numbers=NHWC)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref_y))
    ref = jax.grad(functools.partial(_loss, lax.conv_general_dilated, s, padding), (0, 1))(x, w)
    got = jax.jit(jax.grad(functools.partial(_loss, ours, s, padding), (0, 1)))(x, w)
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-5 * float(jnp.abs(a).max())
        )


def test_unsupported_layouts_fall_back_to_xla():
    x = jnp.ones((2, 3, 8, 8))  # NCHW with dilation: not the matrix-product route
    w = jnp.ones((4, 3, 3, 3))
    args = dict(window_strides=(1, 1), padding="SAME", rhs_dilation=(2, 2))
    want = lax.conv_general_dilated(x, w, **args)
    got = conv_general_dilated(x, w, kernel_grad="matmul", **args)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_bad_mode_is_rejected():
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match="kernel_grad"):
        conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC, kernel_grad="fast")


def test_resnet_gradients_equal_xla(monkeypatch):
    """A whole ResNet's parameter gradients agree between the two routes."""
    from synthaug.classifiers import conv

    # Basic blocks with strided 3x3 convs and strided 1x1 shortcuts (the 7x7 stem and the
    # bottleneck's 1x1 convs are covered conv by conv above).
    model = get_model("resnet_tiny", num_classes=5, widths=(4, 8, 8, 8), stem_width=4)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    variables = jax.jit(model.init, static_argnames="train")(jax.random.PRNGKey(1), x, train=False)

    def loss(params):
        out, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.sum(out**2)

    grads = {}
    for mode in ("xla", "matmul"):
        monkeypatch.setattr(conv, "_use_matmul", lambda _m, _shape, mode=mode: mode == "matmul")
        grads[mode] = jax.jit(jax.grad(loss))(variables["params"])
    flat_x = jax.tree_util.tree_leaves_with_path(grads["xla"])
    flat_m = jax.tree_util.tree_leaves(grads["matmul"])
    assert len(flat_x) == len(flat_m) > 20
    for (path, a), b in zip(flat_x, flat_m, strict=True):
        scale = float(jnp.abs(a).max()) + 1e-12
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4 * scale, err_msg=str(path)
        )


def test_auto_route_choice():
    from synthaug.classifiers.conv import _use_matmul

    cpu = jax.default_backend() == "cpu"
    assert _use_matmul("auto", (1, 1, 64, 256)) == cpu
    assert _use_matmul("auto", (3, 3, 256, 256)) == cpu
    assert not _use_matmul("auto", (7, 7, 3, 64))
    assert not _use_matmul("auto", (3, 3, 64, 64))
    assert _use_matmul("matmul", (7, 7, 3, 64))
    assert not _use_matmul("xla", (1, 1, 64, 256))
