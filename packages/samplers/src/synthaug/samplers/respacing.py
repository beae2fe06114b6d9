"""Respacing: sampling on a subset of a schedule's steps.

A sampler that visits only the kept steps ``k_1 < k_2 < ... < k_K`` of an N-step schedule
must use the cumulative alphas of those steps, ``alpha_bar[k_j]``, and rebuild the per-step
betas from them, ``beta'_j = 1 - alpha_bar[k_j] / alpha_bar[k_{j-1}]`` (with
``alpha_bar[k_0] = 1``). Reusing the original ``betas[k_j]`` (a known bug) gives the wrong
marginals. The kept steps keep their continuous ``times``, which is what the network sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthaug.diffusion_core.schedules import DiscreteSchedule

__all__ = ["kept_steps", "respace", "spaced_steps"]


def spaced_steps(num_train_steps: int, count: int) -> np.ndarray:
    """``count`` step indices spread evenly over ``[0, num_train_steps - 1]``.

    Both ends are always kept, so sampling starts from the noisiest step and ends at the
    cleanest one.

    Args:
      num_train_steps: length N of the full schedule.
      count: number of steps to keep, ``1 <= count <= N``.

    Returns:
      ``(count,)`` int64 array of increasing, distinct indices.
    """
    if not 1 <= count <= num_train_steps:
        raise ValueError(
            f"num_steps must be between 1 and the schedule length {num_train_steps}, got {count}"
        )
    if count == 1:
        return np.asarray([num_train_steps - 1], dtype=np.int64)
    steps = np.round(np.linspace(0.0, num_train_steps - 1, count)).astype(np.int64)
    if len(np.unique(steps)) != count:  # cannot happen for count <= N, kept as a guard
        raise ValueError(f"cannot space {count} distinct steps over {num_train_steps}")
    return steps


def kept_steps(num_train_steps: int, num_steps: int | Sequence[int] | None) -> np.ndarray:
    """The step indices a sampler visits.

    Args:
      num_train_steps: length N of the full schedule.
      num_steps: ``None`` (every step), an int (that many evenly spaced steps, see
        :func:`spaced_steps`) or an explicit sequence of distinct indices in ``[0, N)``.

    Returns:
      ``(K,)`` int64 array of increasing indices.
    """
    if num_steps is None:
        return np.arange(num_train_steps, dtype=np.int64)
    if isinstance(num_steps, int | np.integer):
        return spaced_steps(num_train_steps, int(num_steps))
    steps = np.asarray(num_steps)
    if steps.ndim != 1 or steps.size == 0 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(
            f"num_steps must be None, an int or a non-empty 1-D sequence of step indices, "
            f"got {num_steps!r}"
        )
    steps = np.sort(steps.astype(np.int64))
    if steps[0] < 0 or steps[-1] >= num_train_steps:
        raise ValueError(
            f"num_steps indices must lie in [0, {num_train_steps}), got {steps[0]}..{steps[-1]}"
        )
    if np.any(np.diff(steps) == 0):
        raise ValueError("num_steps indices must be distinct")
    return steps


def respace(schedule: DiscreteSchedule, steps: Sequence[int] | np.ndarray) -> DiscreteSchedule:
    """The schedule restricted to the kept ``steps``, with betas rebuilt from ``alpha_bar``.

    Args:
      schedule: the full N-step schedule.
      steps: increasing, distinct step indices (see :func:`kept_steps`).

    Returns:
      A K-step :class:`DiscreteSchedule` with ``alphas_cumprod = schedule.alphas_cumprod[steps]``,
      ``times = schedule.times[steps]`` and ``betas = 1 - alpha_bar_j / alpha_bar_{j-1}``.
    """
    if not isinstance(schedule, DiscreteSchedule):
        raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
    steps = kept_steps(schedule.num_steps, list(np.asarray(steps).tolist()))
    return DiscreteSchedule.from_alphas_cumprod(
        np.asarray(schedule.alphas_cumprod, np.float64)[steps],
        np.asarray(schedule.times, np.float64)[steps],
    )
