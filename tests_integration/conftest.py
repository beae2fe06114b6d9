"""Fixtures of the integration tests: the ``synthaug`` command line in a subprocess.

XLA compiles with the demo's quick-compile flags (unless ``XLA_FLAGS`` is set already), in
this process and in every subprocess the tests start: the tests' time is mostly XLA compiling
tiny networks, and the flags halve it. The demo runs with these flags by default, so its
numbers are the same either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from synthaug.pipeline.demo import FAST_COMPILE_FLAGS

os.environ.setdefault("XLA_FLAGS", " ".join(FAST_COMPILE_FLAGS))

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


def tree_snapshot(root) -> dict[str, tuple[str, str]]:
    """Every entry under ``root``: its permission bits and, for a file, the SHA-256 of its
    bytes (``"dir"`` for a directory, the target for a link). ``{}`` if ``root`` is missing."""
    import hashlib
    import pathlib
    import stat

    root = pathlib.Path(root)
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            what = "dir"
        else:
            what = hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = (oct(stat.S_IMODE(st.st_mode)), what)
    return out


@pytest.fixture(scope="session")
def snapshot():
    """``snapshot(root)``: a listing of ``root`` with modes and hashes (see tree_snapshot)."""
    return tree_snapshot
