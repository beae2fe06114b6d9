"""The part the ViT and DeiT classifier configs share (not a config: no ``get_config``)."""

import ml_collections

from synthaug.pipeline.schemas import classifier_config


def transformer_config(
    variant,
    *,
    key: str,
    recipe: ml_collections.ConfigDict,
    paper: dict,
    note: str,
    hardware: str,
) -> ml_collections.ConfigDict:
    """A train-classifier config on real (``real``) or real + 1.2M synthetic (``mixed``) data.

    Args:
      variant: ``"real"`` (default) or ``"mixed"``.
      key: the run's name (its workdir is ``runs/{key}_{variant}``).
      recipe: the ``synthaug.classifiers`` recipe (``deit_recipe(...)``).
      paper: the paper's top-1 per variant.
      note, hardware: for the config's ``paper`` and ``hardware`` keys.
    """
    variant = variant or "real"
    if variant not in paper:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(paper)}")
    c = classifier_config(recipe)
    c.workdir = f"runs/{key}_{variant}"
    c.data.update(
        mode=variant,
        synthetic_dir="runs/sample_256/shards",
        synthetic_images=1_200_000 if variant == "mixed" else 0,
    )
    c.data.real.update(source="imagenet_tfds", data_dir="", split="train")
    c.hardware = hardware
    c.paper = dict(top1=paper[variant], note=note)
    return c
