"""The part the ViT and DeiT classifier configs share (not a config: no ``get_config``)."""

import ml_collections

DEIT_TRAIN = dict(
    recipe="deit",
    optimizer="adamw",
    epochs=300,
    batch_size=1024,
    base_learning_rate=5e-4 * 256 / 512,
    warmup_epochs=5,
    schedule="cosine",
    weight_decay=0.05,
    label_smoothing=0.1,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    randaugment="2,9",
)


def transformer_config(
    variant, *, key: str, model: str, paper: dict, note: str, hardware: str, train: dict
) -> ml_collections.ConfigDict:
    """A train-classifier config on real (``real``) or real + 1.2M synthetic (``mixed``) data."""
    variant = variant or "real"
    if variant not in paper:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(paper)}")
    c = ml_collections.ConfigDict()
    c.stage = "train-classifier"
    c.workdir = f"runs/{key}_{variant}"
    c.model = dict(name=model, num_classes=1000, image_size=224)
    c.data = dict(
        mode=variant,
        real=dict(source="imagenet_tfds", data_dir="", split="train"),
        synthetic_dir="runs/sample_256/shards",
        synthetic_images=1_200_000 if variant == "mixed" else 0,
    )
    c.train = dict(train)
    c.hardware = hardware
    c.paper = dict(top1=paper[variant], note=note)
    return c
