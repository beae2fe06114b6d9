"""Test setup and helpers of the command-line tests: a hashed listing of a directory and the
one-line check.

Before any JAX backend starts, XLA gets the demo's quick-compile flags (unless the caller's
``XLA_FLAGS`` say otherwise), in this process and in the subprocesses the tests start: the
suite's time is mostly XLA compiling tiny networks, and the flags halve it at the cost of
run-time speed that does not matter at these sizes.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import pytest

from synthaug.pipeline.demo import FAST_COMPILE_FLAGS

os.environ.setdefault("XLA_FLAGS", " ".join(FAST_COMPILE_FLAGS))

from synthaug.pipeline import cli  # noqa: E402


def listing(root: pathlib.Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fails(capsys, argv, *needles) -> str:
    """Run the CLI; it must exit 2 with one line on stderr holding every needle."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    # Progress bars of the work done before the failure may precede it; the error itself is
    # the last line, the only one of its kind, and no traceback is printed.
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("synthaug: error: "), err
    assert sum("synthaug: error" in x for x in lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.fixture
def cli_fails(capsys):
    """``cli_fails(argv, *needles)``: the CLI exits 2 with one line holding every needle."""
    return lambda argv, *needles: fails(capsys, argv, *needles)


@pytest.fixture
def dir_listing():
    """``dir_listing(root)``: every file under ``root`` with the SHA-256 of its bytes."""
    return listing


@pytest.fixture(scope="session")
def one_level_unet() -> list[str]:
    """Overrides of ``demo/finetune:base`` for tests that train it: one U-Net level, self- and
    cross-attention kept at 16x16 (its train step compiles in 60% of the demo net's time)."""
    return [
        "model.channel_mult=(1,)",
        "model.attention_resolutions=(16,)",
        "model.cross_attention_resolutions=(16,)",
    ]
