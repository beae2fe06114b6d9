"""ILSVRC2012 class metadata: WordNet ids in the standard label order, names, short names.

The table ships with the package (``data/imagenet_classes.tsv``, written by
``tools/fixtures/make_imagenet_data_classes.py``). Label ``i`` is the ``i``-th WordNet id in
sorted order, the order used by TFDS ``imagenet2012`` and by per-class folders sorted by
name.
"""

from __future__ import annotations

import functools
from importlib import resources

NUM_CLASSES = 1000
#: Number of ILSVRC2012 classes (an int, same as ``NUM_CLASSES``).
num_classes = NUM_CLASSES


class UnknownClassError(KeyError):
    """An ImageNet WordNet id, label or class name that is not in the table."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0]) if self.args else ""


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = resources.files(__package__).joinpath("data/imagenet_classes.tsv").read_text("utf-8")
    wnids, names = [], []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        label, wnid, name = line.split("\t")
        if int(label) != len(wnids):
            raise RuntimeError(f"imagenet_classes.tsv: label {label} out of order")
        wnids.append(wnid)
        names.append(name)
    if len(wnids) != NUM_CLASSES:
        raise RuntimeError(f"imagenet_classes.tsv: expected {NUM_CLASSES} rows, got {len(wnids)}")
    return tuple(wnids), tuple(names)


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(_table()[0])}


@functools.lru_cache(maxsize=1)
def _name_indices() -> tuple[dict[str, list[int]], ...]:
    """Name -> labels tables in order of precedence: exact full names, short names, lemmas,
    then the same lower-cased."""
    tables: list[dict[str, list[int]]] = [{} for _ in range(6)]
    for label, names in enumerate(_table()[1]):
        lemmas = [x.strip() for x in names.split(",")]
        for offset, fold in ((0, str), (3, str.lower)):
            tables[offset].setdefault(fold(names), []).append(label)
            tables[offset + 1].setdefault(fold(lemmas[0]), []).append(label)
            for x in dict.fromkeys(fold(x) for x in lemmas):
                tables[offset + 2].setdefault(x, []).append(label)
    return tuple(tables)


@functools.lru_cache(maxsize=1)
def _prompt_index() -> dict[str, int]:
    return {PROMPT_OVERRIDES[w].lower(): _wnid_index()[w] for w in PROMPT_OVERRIDES}


def wnids() -> tuple[str, ...]:
    """All 1000 WordNet ids, index = label."""
    return _table()[0]


def class_names() -> tuple[str, ...]:
    """All 1000 human-readable names (comma-separated WordNet lemmas), index = label."""
    return _table()[1]


@functools.lru_cache(maxsize=1)
def short_names() -> tuple[str, ...]:
    """All 1000 short names (the first lemma), index = label. Two pairs collide; prompts use
    :func:`prompt_names`."""
    return tuple(n.split(",")[0].strip() for n in _table()[1])


#: Prompt names that replace a short name shared by two classes, keyed by WordNet id. Only
#: these classes' first lemmas collide: "crane" (a bird and a machine), "maillot" (tights
#: and a swimsuit), and "Cardigan" / "cardigan" (a dog and a sweater, apart only by case).
#: The parentheses follow the WordNet glosses.
PROMPT_OVERRIDES: dict[str, str] = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n03710637": "maillot (tights)",
    "n03710721": "maillot (swimsuit)",
    "n02113186": "Cardigan Welsh corgi",
}


@functools.lru_cache(maxsize=1)
def prompt_names() -> tuple[str, ...]:
    """All 1000 prompt names, index = label: the short name, except for the classes whose
    short names collide (:data:`PROMPT_OVERRIDES`). Distinct, also ignoring case."""
    return tuple(
        PROMPT_OVERRIDES.get(wnid, short)
        for wnid, short in zip(wnids(), short_names(), strict=True)
    )


def prompt_name(label: int) -> str:
    """The prompt name of ``label`` (e.g. ``"tench"``, ``"crane (bird)"``)."""
    return prompt_names()[_check_label(label)]


def _check_label(label: int) -> int:
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise UnknownClassError(
            f"label: expected an int in [0, {NUM_CLASSES}), got {label!r}"
        ) from None
    if value != label or not 0 <= value < NUM_CLASSES:
        raise UnknownClassError(f"label: expected an int in [0, {NUM_CLASSES}), got {label!r}")
    return value


def wnid_to_label(wnid: str) -> int:
    """The label of a WordNet id such as ``"n01440764"``.

    Args:
      wnid: an ILSVRC2012 WordNet id.

    Returns:
      The int label in [0, 1000).

    Raises:
      UnknownClassError: (a KeyError) if ``wnid`` is not one of the 1000 classes.
    """
    try:
        return _wnid_index()[wnid]
    except (KeyError, TypeError):
        raise UnknownClassError(
            f"wnid: {wnid!r} is not an ILSVRC2012 WordNet id (expected e.g. 'n01440764')"
        ) from None


def label_to_wnid(label: int) -> str:
    """The WordNet id of ``label`` (an int in [0, 1000))."""
    return _table()[0][_check_label(label)]


def class_name(label: int) -> str:
    """The full human-readable name of ``label``: its WordNet lemmas, comma-separated."""
    return _table()[1][_check_label(label)]


def short_name(label: int) -> str:
    """The short name of ``label`` (its first lemma, e.g. ``"tench"``)."""
    return class_name(label).split(",")[0].strip()


def label_from_name(name: str) -> int:
    """The label of a class given by a name, a lemma or a WordNet id (case-insensitive).

    Args:
      name: a full name (``"tench, Tinca tinca"``), a short name (``"tench"``), any single
        lemma (``"Tinca tinca"``), a disambiguated prompt name (``"crane (bird)"``, see
        :func:`prompt_names`) or a WordNet id. Full names take precedence over short
        names, and short names over other lemmas (``"partridge"`` is class 86, whose short
        name it is, not class 82 that lists it second), and an exact-case match over a
        case-insensitive one (``"Cardigan"`` is the dog, ``"cardigan"`` the sweater).

    Returns:
      The int label.

    Raises:
      UnknownClassError: if no class has that name, or if the name is ambiguous (e.g.
        ``"crane"`` names a bird and a machine); the message lists the candidates.
    """
    if not isinstance(name, str):
        raise UnknownClassError(f"name: expected a str, got {type(name).__name__}")
    if name in _wnid_index():
        return _wnid_index()[name]
    key = " ".join(name.split())
    if key.lower() in _prompt_index():
        return _prompt_index()[key.lower()]
    labels = None
    for k, index in enumerate(_name_indices()):
        labels = index.get(key if k < 3 else key.lower())
        if labels:
            break
    if not labels:
        raise UnknownClassError(f"name: {name!r} is not the name of an ILSVRC2012 class")
    if len(labels) > 1:
        cands = "; ".join(f"{i} {label_to_wnid(i)} ({class_name(i)})" for i in labels)
        raise UnknownClassError(
            f"name: {name!r} is ambiguous, it names {len(labels)} classes: {cands}; "
            "pass the WordNet id"
        )
    return labels[0]
