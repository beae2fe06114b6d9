"""The model registry: names -> Flax modules, parameter counting without allocation."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.classifiers.resnet import ResNet
from synthaug.classifiers.vit import VisionTransformer

_RESNET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

_VIT_SIZES = {  # embed_dim, depth, num_heads
    "ti": (192, 12, 3),
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
}
_DEIT_SIZES = {"tiny": "ti", "small": "s", "base": "b", "large": "l"}


def _registry() -> dict[str, tuple[type[nn.Module], dict[str, Any]]]:
    reg: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}
    for depth in (18, 34, 50, 101, 152):
        block, stages = _RESNET_STAGES[depth]
        reg[f"resnet{depth}"] = (ResNet, dict(block=block, stage_sizes=stages))
    for depth in (50, 101, 152, 200):
        block, stages = _RESNET_STAGES[depth]
        reg[f"resnetrs{depth}"] = (
            ResNet,
            dict(
                block=block,
                stage_sizes=stages,
                stem_type="deep",
                replace_stem_pool=True,
                avg_down=True,
                se_ratio=0.25,
                zero_init_last=True,
            ),
        )
    for size, (dim, depth, heads) in _VIT_SIZES.items():
        for patch in (16, 32):
            for res in (224, 384):
                reg[f"vit_{size}{patch}_{res}"] = (
                    VisionTransformer,
                    dict(
                        embed_dim=dim,
                        depth=depth,
                        num_heads=heads,
                        patch_size=patch,
                        image_size=res,
                    ),
                )
    for long, short in _DEIT_SIZES.items():
        dim, depth, heads = _VIT_SIZES[short]
        for res in (224, 384):
            base = dict(embed_dim=dim, depth=depth, num_heads=heads, patch_size=16, image_size=res)
            reg[f"deit_{long}_patch16_{res}"] = (VisionTransformer, base)
            reg[f"deit_{long}_distilled_patch16_{res}"] = (
                VisionTransformer,
                dict(base, distilled=True),
            )
    # Tiny presets for 32x32 inputs (the CPU demo).
    reg["resnet_tiny"] = (
        ResNet,
        dict(
            block="basic",
            stage_sizes=(1, 1, 1, 1),
            widths=(16, 32, 64, 128),
            stem_width=16,
            stem_type="cifar",
        ),
    )
    reg["resnet_small_cifar"] = (
        ResNet,
        dict(
            block="basic",
            stage_sizes=(2, 2, 2, 2),
            widths=(32, 64, 128, 256),
            stem_width=32,
            stem_type="cifar",
        ),
    )
    reg["vit_tiny_patch4_32"] = (
        VisionTransformer,
        dict(embed_dim=64, depth=4, num_heads=4, patch_size=4, image_size=32, mlp_ratio=2.0),
    )
    return reg


_REGISTRY = _registry()
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def model_kwargs(name: str) -> dict[str, Any]:
    """The constructor arguments of a registered model (a copy).

    Args:
      name: a name from ``MODEL_NAMES``.

    Returns:
      dict of module attributes.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model name {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return dict(_REGISTRY[name][1])


def get_model(name: str, num_classes: int = 1000, **overrides: Any) -> nn.Module:
    """Build a registered classifier.

    Args:
      name: e.g. ``"resnet50"``, ``"resnetrs101"``, ``"vit_s16_224"``,
        ``"deit_base_patch16_384"``, ``"resnet_tiny"``, ``"vit_tiny_patch4_32"``.
      num_classes: size of the classifier head.
      **overrides: module attributes to change (``drop_path_rate``, ``dtype``, ...).

    Returns:
      an unbound Flax module; call with ``(images, train=..., return_features=...)``.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    kwargs = model_kwargs(name)
    cls = _REGISTRY[name][0]
    fields = set(cls.__dataclass_fields__)
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown override(s) {bad} for model {name!r} ({cls.__name__})")
    kwargs.update(overrides)
    return cls(num_classes=num_classes, **kwargs)


def default_image_size(model: nn.Module) -> int:
    """The input side a model expects (ViT: fixed; ResNet: 224, tiny CIFAR stems: 32)."""
    if isinstance(model, VisionTransformer):
        return model.image_size
    if isinstance(model, ResNet) and model.stem_type == "cifar":
        return 32
    return 224


def init_shapes(model: nn.Module, image_size: int | None = None) -> Any:
    """Variable shapes of ``model`` from ``jax.eval_shape`` (nothing is allocated).

    Args:
      model: a module from :func:`get_model`.
      image_size: input side (default :func:`default_image_size`).

    Returns:
      a pytree of ``jax.ShapeDtypeStruct`` with ``params`` (and ``batch_stats``).
    """
    size = image_size or default_image_size(model)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(
        lambda k, x: model.init({"params": k, "dropout": k}, x, train=False),
        jax.ShapeDtypeStruct((2,), jnp.uint32),
        x,
    )


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or shape structs."""
    return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree)))
