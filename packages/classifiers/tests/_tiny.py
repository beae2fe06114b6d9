"""Shared tiny configurations for the tests (a few-thousand-parameter ResNet on 8x8 images)."""

import ml_collections
import numpy as np

from synthaug.classifiers import demo_recipe


def micro_config(**overrides) -> ml_collections.ConfigDict:
    cfg = demo_recipe("resnet_tiny", num_classes=4, batch_size=8, epochs=2, image_size=8)
    cfg.model_kwargs = ml_collections.ConfigDict(dict(widths=(4, 8, 8, 8), stem_width=4))
    cfg.eval_batch_size = 8
    cfg.train_examples = 64
    cfg.update(overrides)
    return cfg


def toy_data(n: int, *, seed: int = 0, num_classes: int = 4, size: int = 8):
    """Images whose colour depends on the class (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    palette = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40]])
    noise = rng.integers(-30, 30, (n, size, size, 3))
    images = np.clip(palette[labels % 4][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def pair_config() -> ml_collections.ConfigDict:
    """The run of test_parallel.py's two processes and of its one-process reference.

    base_lr 0.02: at the recipe's 0.2 with random crops, training on the toy images is
    chaotic, and the reductions' summation order (1e-7 relative) grows to 1e-2 of the loss
    within 16 steps, so that nothing but the order could be compared.
    """
    return micro_config(epochs=2, checkpoint_every_steps=4, base_lr=0.02)
