"""Weight import from torchvision / timm files against golden logits from the reference."""

import json
import pathlib
import pickle
import zipfile

import jax
import numpy as np
import pytest

from synthaug.classifiers import (
    CheckpointFormatError,
    ResNet,
    VisionTransformer,
    convert_state_dict,
    get_model,
    init_shapes,
    load_state_dict,
    load_torch_weights,
    read_pth,
)

FIX = pathlib.Path(__file__).parent / "fixtures"
NARROW = dict(stage_sizes=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_classes=10)
TINY_VIT = dict(num_classes=10, image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)

CASES = {
    "tv_resnet_bottleneck.pth": ("tv_resnet_bottleneck", 64, ResNet(block="bottleneck", **NARROW)),
    "tv_resnet_basic.safetensors": ("tv_resnet_basic", 64, ResNet(block="basic", **NARROW)),
    "timm_resnetrs.pth": (
        "timm_resnetrs",
        64,
        ResNet(
            block="bottleneck",
            stem_width=32,
            stem_type="deep",
            replace_stem_pool=True,
            avg_down=True,
            se_ratio=0.25,
            **NARROW,
        ),
    ),
    "timm_vit.safetensors": ("timm_vit", 32, VisionTransformer(**TINY_VIT)),
    "timm_vit.pth": ("timm_vit", 32, VisionTransformer(**TINY_VIT)),
    "timm_deit_distilled.safetensors": (
        "timm_deit_distilled",
        32,
        VisionTransformer(distilled=True, **TINY_VIT),
    ),
    "tv_vit.pth": ("tv_vit", 32, VisionTransformer(**TINY_VIT)),
}


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(FIX / "classifiers_torch_logits.npz"))


@pytest.mark.parametrize("filename", sorted(CASES))
def test_logits_match_reference(filename, golden):
    key, size, model = CASES[filename]
    variables = load_torch_weights(FIX / filename, model)
    logits = np.asarray(model.apply(variables, golden[f"inputs_{size}"], train=False))
    ref = golden[f"logits_{key}"]
    assert logits.shape == ref.shape
    np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-4)
    # The weights are not trivial: logits differ between the two inputs.
    assert np.abs(ref[0] - ref[1]).max() > 1e-2


def test_pth_and_safetensors_give_the_same_arrays():
    a = load_state_dict(FIX / "timm_vit.pth")
    b = load_state_dict(FIX / "timm_vit.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_bn_counters_are_read_as_int64():
    sd = read_pth(FIX / "tv_resnet_bottleneck.pth")
    assert sd["bn1.num_batches_tracked"].dtype == np.int64
    assert sd["bn1.num_batches_tracked"].shape == ()


@pytest.mark.parametrize(
    "manifest_key,model_name",
    [
        ("tv_resnet50", "resnet50"),
        ("timm_vit_small_patch16_224", "vit_s16_224"),
        ("tv_vit_b_16", "vit_b16_224"),
    ],
)
def test_full_size_names_and_shapes_map_onto_the_model(manifest_key, model_name):
    manifest = json.loads((FIX / "classifiers_torch_manifest.json").read_text())[manifest_key]
    # Zero arrays with the reference shapes (np.zeros does not touch the memory).
    sd = {
        k: np.zeros(s, np.int64 if "num_batches" in k else np.float32) for k, s in manifest.items()
    }
    model = get_model(model_name)
    variables = convert_state_dict(sd, model)
    shapes = jax.tree_util.tree_map(lambda s: s.shape, init_shapes(model))
    assert jax.tree_util.tree_map(np.shape, variables) == shapes


def test_reference_parameter_counts_recorded_by_the_fixture():
    counts = json.loads((FIX / "classifiers_torch_manifest.json").read_text())["param_counts"]
    from synthaug.classifiers import count_params

    assert count_params(init_shapes(get_model("resnet50"))["params"]) == counts["tv_resnet50"]
    assert count_params(init_shapes(get_model("resnetrs50"))["params"]) == counts["timm_resnetrs50"]


def test_wrong_model_is_rejected():
    with pytest.raises(ValueError, match="ResNet"):
        load_torch_weights(FIX / "tv_resnet_basic.safetensors", VisionTransformer(**TINY_VIT))
    with pytest.raises((KeyError, ValueError), match="does not match"):
        load_torch_weights(
            FIX / "tv_resnet_basic.safetensors", ResNet(block="bottleneck", **NARROW)
        )


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pth_reader_refuses_arbitrary_callables(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(CheckpointFormatError, match="evil.pth: refusing to load .*print"):
        read_pth(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_state_dict(tmp_path / "nope.pth")
    bad = tmp_path / "legacy.pth"
    bad.write_bytes(b"\x80\x02not a zip")
    with pytest.raises(CheckpointFormatError, match="legacy.pth: not a PyTorch file"):
        load_state_dict(bad)
    st = tmp_path / "short.safetensors"
    st.write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointFormatError, match="short.safetensors: not a safetensors file"):
        load_state_dict(st)
