"""The benchmark harness: timing, peer ratios and the result record.

An entry is a module ``tools/bench/bench_<name>.py`` with a function
``run(quick: bool) -> list[Result]``. Each timed quantity is measured with
:func:`measure` (warm-up runs, then at least 5 timed runs; median, min, max) and compared
with its peer measured in the same process.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Timing:
    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def measure(fn: Callable[[], Any], *, warmup: int = 2, runs: int = 5) -> Timing:
    """Seconds per call of ``fn`` (which must block until its result is ready)."""
    if runs < 5:
        raise ValueError(f"runs must be >= 5, got {runs}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), max(times), runs)


@dataclasses.dataclass
class Result:
    """One benchmark entry.

    ``value`` is what is reported (e.g. images/s), ``ratio`` the comparison with the peer
    (>1 means better than the peer unless ``lower_is_better``), ``target`` the ratio the
    entry must reach.
    """

    name: str
    metric: str
    value: float
    unit: str
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None
    target: float | None = None
    lower_is_better: bool = False
    timing: Timing | None = None
    peer_timing: Timing | None = None
    notes: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["met"] = self.met
        return d


def block(x):
    """Block on a JAX pytree (or return a non-JAX value unchanged)."""
    try:
        import jax

        return jax.block_until_ready(x)
    except ImportError:  # pragma: no cover
        return x
