"""Model definitions: exact reference parameter counts (jax.eval_shape, nothing allocated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.classifiers import (
    MODEL_NAMES,
    VisionTransformer,
    count_params,
    get_model,
    init_shapes,
)

# torchvision / timm definitions, 1000 classes (PAPER.md "Reference parameter counts";
# ResNet-18/34, ViT-Ti, ResNet-RS and distilled DeiT from torchvision/timm).
REFERENCE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnetrs50": 35_691_912,
    "resnetrs101": 63_618_696,
    "vit_ti16_224": 5_717_416,
    "vit_s16_224": 22_050_664,
    "deit_small_patch16_224": 22_050_664,
    "vit_s32_224": 22_878_952,
    "vit_b16_224": 86_567_656,
    "deit_base_patch16_224": 86_567_656,
    "vit_b16_384": 86_859_496,
    "vit_b32_384": 88_297_192,
    "vit_l16_224": 304_326_632,
    "deit_small_distilled_patch16_224": 22_436_432,
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_parameter_count_matches_reference(name):
    assert count_params(init_shapes(get_model(name))["params"]) == REFERENCE[name]


def test_resnet50_batch_stats_shapes():
    shapes = init_shapes(get_model("resnet50"))
    assert count_params(shapes["batch_stats"]) == 2 * 26560  # mean + var of every BN


@pytest.mark.parametrize("name", ["resnet_tiny", "vit_tiny_patch4_32"])
def test_tiny_presets_forward_and_features(name):
    model = get_model(name, 10)
    variables = init_shapes(model)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    feats = jax.eval_shape(lambda v, x: model.apply(v, x, return_features=True), variables, x)
    assert logits.shape == (2, 10) and feats.ndim == 2 and feats.shape[0] == 2
    assert count_params(variables["params"]) < 400_000


def test_stochastic_depth_is_random_in_training_only():
    model = VisionTransformer(
        num_classes=3,
        image_size=8,
        patch_size=4,
        embed_dim=8,
        depth=2,
        num_heads=2,
        drop_path_rate=0.5,
    )
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 8, 8, 3))
    v = jax.jit(model.init)(jax.random.PRNGKey(0), x)

    @jax.jit
    def both(v, x, k):
        train = model.apply(v, x, train=True, rngs={"dropout": k})
        return train, model.apply(v, x)

    a, e1 = both(v, x, jax.random.PRNGKey(1))
    b, e2 = both(v, x, jax.random.PRNGKey(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(e1, e2)


def test_registry_errors():
    assert "resnet50" in MODEL_NAMES and "deit_base_patch16_384" in MODEL_NAMES
    with pytest.raises(KeyError, match="unknown model name 'resnet51'"):
        get_model("resnet51")
    with pytest.raises(ValueError, match="unknown override"):
        get_model("resnet50", width=3)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("resnet50", 0)
    with pytest.raises(ValueError, match="ViT input must be"):
        init_shapes(get_model("vit_s16_224"), 192)
