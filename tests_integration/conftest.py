"""Fixtures of the integration tests: the ``synthaug`` command line in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}


def synthaug_cmd() -> list[str]:
    """The console script if it is installed, else the module behind it."""
    exe = shutil.which("synthaug", path=os.path.dirname(sys.executable))
    if exe:
        return [exe]
    return [
        sys.executable,
        "-c",
        "import sys; from synthaug.pipeline.cli import main; sys.exit(main())",
    ]


def run(*args: str, cwd=None, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*synthaug_cmd(), *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def popen(*args: str, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        [*synthaug_cmd(), *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


class Cli:
    """``cli.run(*args)`` / ``cli.popen(*args)``: the ``synthaug`` command in a subprocess."""

    run = staticmethod(run)
    popen = staticmethod(popen)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()
