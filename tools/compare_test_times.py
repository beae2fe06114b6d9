#!/usr/bin/env python3
"""Compare two ``nox -s tests -- --durations=0`` logs test by test.

Separates the time of the tests both runs have (same nox session, same pytest node id) from
the time of the tests only one of them has, so that a change to the suite's total can be
told apart into "the same tests got slower or faster" and "tests were added or removed".

A test's time is the sum of its setup, call and teardown durations as pytest reports them
(a module fixture's setup is charged to the first test that uses it). Per session the table
gives that time for the shared tests in each run, for the tests only the newer run has,
and for those only the older run has, and each session's pytest wall time. Test counts are
of the tests with a reported duration: pytest leaves out those under 5 ms unless run with
``-vv``.

Usage::

    (cd OLD_CHECKOUT && nox -r -s tests -- --durations=0) > old.log 2>&1
    (cd NEW_CHECKOUT && nox -r -s tests -- --durations=0) > new.log 2>&1
    python tools/compare_test_times.py old.log new.log
"""

from __future__ import annotations

import collections
import re
import sys

_SESSION = re.compile(r"nox > Running session (\S+)")
_DURATION = re.compile(r"\s*([0-9.]+)s (?:call|setup|teardown)\s+(\S+)")
_SUMMARY = re.compile(r"=+ (\d+) passed.* in ([0-9.]+)s")


def parse(path: str) -> tuple[dict[tuple[str, str], float], dict[str, tuple[int, float]]]:
    """``({(session, node id): seconds}, {session: (passed, pytest wall seconds)})``."""
    session = None
    times: dict[tuple[str, str], float] = collections.defaultdict(float)
    walls: dict[str, tuple[int, float]] = {}
    with open(path, errors="replace") as f:
        for line in f:
            if m := _SESSION.match(line):
                session = m.group(1)
            elif session is None:
                continue
            elif m := _DURATION.match(line):
                times[(session, m.group(2))] += float(m.group(1))
            elif m := _SUMMARY.search(line):
                walls[session] = (int(m.group(1)), float(m.group(2)))
    if not times:
        raise SystemExit(f"{path}: no pytest durations found; run nox with -- --durations=0")
    return dict(times), walls


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, old_walls = parse(argv[0])
    new, new_walls = parse(argv[1])
    shared = [k for k in new if k in old]
    print(
        f"old: {len(old)} tests, {sum(old.values()):.0f} s; new: {len(new)} tests, "
        f"{sum(new.values()):.0f} s"
    )
    print(
        f"shared: {len(shared)} tests, old {sum(old[k] for k in shared):.0f} s, "
        f"new {sum(new[k] for k in shared):.0f} s"
    )
    print(
        f"only new: {len(new) - len(shared)} tests, "
        f"{sum(v for k, v in new.items() if k not in old):.0f} s; only old: "
        f"{sum(k not in new for k in old)} tests, "
        f"{sum(v for k, v in old.items() if k not in new):.0f} s"
    )
    rows: dict[str, list[float]] = collections.defaultdict(lambda: [0.0] * 4)
    for k, v in new.items():
        rows[k[0]][0 if k in old else 1] += v
    for k, v in old.items():
        rows[k[0]][2 if k in new else 3] += v
    print()
    print(
        "| session | shared, old (s) | shared, new (s) | only new (s) | only old (s) "
        "| pytest wall old / new (s) |"
    )
    print("|---|---|---|---|---|---|")
    for s in sorted(rows):
        new_same, new_only, old_same, old_only = rows[s]
        walls = " / ".join(f"{w[s][1]:.0f}" if s in w else "-" for w in (old_walls, new_walls))
        print(
            f"| {s} | {old_same:.0f} | {new_same:.0f} | {new_only:.0f} | {old_only:.0f} | {walls} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
