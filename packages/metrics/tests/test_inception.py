"""The FID Inception against pytorch-fid's outputs with the same (regenerated) random weights."""

import jax
import numpy as np
import pytest

from synthaug.metrics import (
    FIDInception,
    StateDictError,
    convert_fid_state_dict,
    fid_inception_torch_shapes,
    load_fid_inception,
    make_feature_fn,
    random_state_dict,
    resize_bilinear,
)


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def state_dict(golden):
    return random_state_dict(fid_inception_torch_shapes(), seed=golden["meta"]["seed"])


@pytest.fixture(scope="module")
def params(state_dict):
    return load_fid_inception(state_dict)


def test_state_dict_layout_matches_pytorch_fid(golden):
    ref = sorted((k, tuple(s)) for k, s in golden["meta"]["state_dict_shapes"])
    assert fid_inception_torch_shapes() == ref


def test_parameter_counts(params):
    n_state = sum(int(np.prod(s)) for _, s in fid_inception_torch_shapes())
    n_folded = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    # conv weights + 4 batch-norm vectors per conv + fc in the state dict; folded: kernel + bias.
    assert n_state == 23_885_392
    assert n_folded == 23_833_744


def test_matches_pytorch_fid_small_images_unbiased_logits(golden, params):
    fn = make_feature_fn(params, logits_bias=False)
    pool3, logits = fn(golden["images_small"])
    assert pool3.shape == (3, 2048) and logits.shape == (3, 1008)
    assert _rel_err(pool3, golden["pool3_small"]) < 1e-4
    # logits without the bias are pool3 @ W; adding the bias gives pytorch-fid's fc output.
    assert _rel_err(np.asarray(logits) + params["fc"]["bias"], golden["logits_small"]) < 1e-4


def test_matches_pytorch_fid_large_images_in_chunks(golden, params):
    # batch_size=1: two calls of one compiled function, outputs concatenated.
    pool3, logits = make_feature_fn(params, batch_size=1)(golden["images_large"])
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    assert _rel_err(pool3, golden["pool3_large"]) < 1e-4
    assert _rel_err(logits, golden["logits_large"]) < 1e-4


def test_unfused_float_input_matches(golden, params):
    fn = make_feature_fn(params, fuse_1x1=False)
    images = golden["images_small"].astype(np.float32) / 255.0
    pool3, logits = fn(images)
    assert _rel_err(pool3, golden["pool3_small"]) < 1e-4
    assert _rel_err(logits, golden["logits_small"]) < 1e-4


def test_resize_is_torch_bilinear_align_corners_false():
    # 2 -> 4: source coordinates (i + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    x = np.array([1.0, 3.0], np.float32).reshape(1, 2, 1, 1) * np.ones((1, 1, 2, 1), np.float32)
    y = np.asarray(resize_bilinear(x, 4))
    np.testing.assert_allclose(y[0, :, 0, 0], [1.0, 1.5, 2.5, 3.0], rtol=1e-6)
    # Shrinking does not antialias: 4 -> 2 samples at 0.5 and 2.5 (means of neighbours).
    x = np.array([0.0, 10.0, 20.0, 100.0], np.float32).reshape(1, 4, 1, 1)
    x = np.broadcast_to(x, (1, 4, 4, 1))
    y = np.asarray(resize_bilinear(x, 2))
    np.testing.assert_allclose(y[0, :, 0, 0], [5.0, 60.0], rtol=1e-6)
    # 299 in, 299 out: unchanged.
    z = np.random.RandomState(0).rand(1, 299, 299, 3).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(resize_bilinear(z, 299)), z)


def test_module_param_tree_is_the_converted_tree(params):
    shapes = jax.eval_shape(
        lambda: FIDInception().init(jax.random.key(0), np.zeros((1, 80, 80, 3), np.float32))
    )["params"]
    got = jax.tree.map(lambda a: tuple(np.shape(a)), params)
    want = jax.tree.map(lambda a: tuple(a.shape), shapes)
    assert got == want


def test_convert_rejects_bad_state_dicts(state_dict):
    missing = dict(state_dict)
    del missing["Mixed_6b.branch7x7_2.conv.weight"]
    with pytest.raises(StateDictError, match="Mixed_6b.branch7x7_2.conv.weight"):
        convert_fid_state_dict(missing)
    extra = dict(state_dict, **{"AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)})
    with pytest.raises(StateDictError, match="AuxLogits"):
        convert_fid_state_dict(extra)
    wrong = dict(state_dict, **{"fc.bias": np.zeros((1000,), np.float32)})
    with pytest.raises(ValueError, match=r"fc.bias.*\(1008,\)"):
        convert_fid_state_dict(wrong)
    # num_batches_tracked entries (as in a torch state dict) are accepted and ignored.
    ok = dict(state_dict, **{"Conv2d_1a_3x3.bn.num_batches_tracked": np.array(0)})
    convert_fid_state_dict(ok)


def test_batchnorm_folding_formula(state_dict, params):
    w = state_dict["Conv2d_1a_3x3.conv.weight"].astype(np.float64)
    g, b = state_dict["Conv2d_1a_3x3.bn.weight"], state_dict["Conv2d_1a_3x3.bn.bias"]
    m, v = state_dict["Conv2d_1a_3x3.bn.running_mean"], state_dict["Conv2d_1a_3x3.bn.running_var"]
    scale = g / np.sqrt(v.astype(np.float64) + 1e-3)
    np.testing.assert_allclose(
        params["Conv2d_1a_3x3"]["kernel"],
        (w * scale[:, None, None, None]).transpose(2, 3, 1, 0),
        rtol=1e-6,
    )
    np.testing.assert_allclose(params["Conv2d_1a_3x3"]["bias"], b - m * scale, rtol=1e-5, atol=1e-7)


def test_feature_fn_rejects_bad_images(params):
    fn = make_feature_fn(params)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        fn(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        fn(np.zeros((2, 32, 32, 1), np.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        fn(np.zeros((2, 32, 32, 3), np.int32))


def test_load_from_file_missing():
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_fid_inception("/nonexistent/nope.pth")
