"""Mixing real and synthetic data: by a sampling ratio or by concatenation."""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MixReport:
    """The composition of a mixed data set.

    Attributes:
      mode: ``"concat"`` or ``"ratio"``.
      real_examples: examples in the real data set (None if unknown).
      synthetic_examples: examples in the synthetic data set (None if unknown).
      synthetic_fraction: the expected fraction of synthetic examples in the output.
      total_examples: examples in one pass over the output (None if infinite or unknown).
    """

    mode: str
    real_examples: int | None
    synthetic_examples: int | None
    synthetic_fraction: float | None
    total_examples: int | None

    def summary(self) -> str:
        """One line describing the mixture."""
        frac = "?" if self.synthetic_fraction is None else f"{self.synthetic_fraction:.1%}"
        real = "?" if self.real_examples is None else f"{self.real_examples:,}"
        syn = "?" if self.synthetic_examples is None else f"{self.synthetic_examples:,}"
        tot = "repeating" if self.total_examples is None else f"{self.total_examples:,}"
        return f"mix ({self.mode}): real {real} + synthetic {syn}; {frac} synthetic; {tot} per pass"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _size(ds: tf.data.Dataset, given: int | None) -> int | None:
    if given is not None:
        return int(given)
    n = int(tf.data.experimental.cardinality(ds))
    return n if n >= 0 else None


def mix(
    real: tf.data.Dataset,
    synthetic: tf.data.Dataset,
    ratio: float | None = None,
    *,
    seed: int | None = None,
    real_size: int | None = None,
    synthetic_size: int | None = None,
    with_source: bool = False,
    shuffle_buffer: int = 0,
) -> tuple[tf.data.Dataset, MixReport]:
    """Mix real and synthetic ``(image, label)`` data sets.

    Args:
      real: the real data set.
      synthetic: the synthetic data set (same element structure).
      ratio: None to concatenate (every real example, then every synthetic one: shuffle
        afterwards); a float in [0, 1] to draw each example from the synthetic set with that
        probability (both inputs are repeated, so the output is infinite).
      seed: the sampling seed (ratio mode).
      real_size: the number of real examples, when the dataset's cardinality is unknown.
      synthetic_size: the number of synthetic examples, likewise.
      with_source: append a bool element ``is_synthetic`` to each example, to measure the
        realised composition (see :func:`measure_composition`).
      shuffle_buffer: shuffle the output through a buffer of this many examples (from
        ``seed``, anew on every pass); 0 leaves the order as drawn. Concatenation needs it
        (or a later shuffle); in ratio mode each draw is already random, so it only mixes
        what each input's own order leaves sorted.

    Returns:
      (dataset, report).
    """
    if int(shuffle_buffer) != shuffle_buffer or shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer: expected an int >= 0, got {shuffle_buffer!r}")

    def shuffled(ds):
        if not shuffle_buffer:
            return ds
        return ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)

    n_real, n_syn = _size(real, real_size), _size(synthetic, synthetic_size)
    if with_source:
        real = real.map(lambda *x: (*x, tf.constant(False)))
        synthetic = synthetic.map(lambda *x: (*x, tf.constant(True)))
    if ratio is None:
        out = real.concatenate(synthetic)
        known = n_real is not None and n_syn is not None
        total = n_real + n_syn if known else None
        frac = n_syn / total if known and total else None
        return shuffled(out), MixReport("concat", n_real, n_syn, frac, total)
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio: expected None or a float in [0, 1], got {ratio}")
    if ratio == 0.0:
        out = real.repeat()
    elif ratio == 1.0:
        out = synthetic.repeat()
    else:
        out = tf.data.Dataset.sample_from_datasets(
            [real.repeat(), synthetic.repeat()], weights=[1.0 - ratio, ratio], seed=seed
        )
    return shuffled(out), MixReport("ratio", n_real, n_syn, ratio, None)


def measure_composition(ds: tf.data.Dataset, num_examples: int) -> dict[str, float]:
    """Count real and synthetic examples among the first ``num_examples`` of a
    ``mix(..., with_source=True)`` data set.

    Returns:
      ``{"real": n, "synthetic": m, "synthetic_fraction": m / (n + m)}``.
    """
    flags = ds.map(lambda *x: x[-1]).take(num_examples)
    syn = real = 0
    for batch in flags.batch(1024).as_numpy_iterator():
        syn += int(batch.sum())
        real += int(batch.size - batch.sum())
    total = real + syn
    return {"real": real, "synthetic": syn, "synthetic_fraction": syn / total if total else 0.0}
