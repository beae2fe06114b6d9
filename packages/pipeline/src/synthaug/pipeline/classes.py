"""Label sets: the class names of a data set and the lookup of names given in a config."""

from __future__ import annotations

from collections.abc import Sequence

from synthaug.pipeline.errors import ConfigError, UnknownClassError

__all__ = ["DATASETS", "class_names", "resolve_classes"]

DATASETS = ("imagenet", "digits")


def class_names(dataset: str) -> tuple[str, ...]:
    """The prompt name of every class of ``dataset`` (index = label).

    ImageNet classes are prompted with their prompt name (``imagenet_data.prompt_names``: the
    first WordNet lemma, e.g. "tench", disambiguated where two classes share it, e.g.
    "crane (bird)" and "crane (machine)"); the digits with "zero" ... "nine".
    """
    from synthaug import imagenet_data as data

    if dataset == "digits":
        return tuple(data.DIGITS_CLASS_NAMES)
    if dataset == "imagenet":
        return tuple(data.prompt_names())
    raise ConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def resolve_classes(dataset: str, names: Sequence[str]) -> list[int]:
    """Labels of the class names a config lists (all classes when ``names`` is empty).

    Raises:
      UnknownClassError: a name that is not a class of ``dataset`` (one line, naming it).
    """
    from synthaug import imagenet_data as data

    all_names = class_names(dataset)
    if not names:
        return list(range(len(all_names)))
    labels = []
    for name in names:
        if dataset == "digits":
            if name not in all_names:
                raise UnknownClassError(
                    f"unknown class name {name!r} for the digits; expected one of "
                    f"{', '.join(all_names)}"
                )
            labels.append(all_names.index(name))
        else:
            try:
                labels.append(data.label_from_name(name))
            except KeyError as e:
                msg = str(e.args[0]) if e.args else name
                raise UnknownClassError(f"unknown class name {name!r}: {msg}") from None
    if len(set(labels)) != len(labels):
        raise ConfigError(f"classes lists a class more than once: {list(names)}")
    return labels
