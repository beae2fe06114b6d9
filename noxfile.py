"""Every check and job of synthaug runs through nox.

nox -s tests                      # every package in its own venv, then the integration tests
nox -s "unit(pkg='samplers')"     # one package's unit tests, in a venv holding only it
nox -s integration                # tests_integration/ with every package installed
nox -s lint                       # ruff check, ruff format --check, tools/check_workspace.py
nox -s demo                       # the main job on the embedded digits data
nox -s bench [-- --quick]         # benchmarks against their peers, writes bench/RESULTS.md
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import tomllib

import nox

ROOT = pathlib.Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"
PACKAGES = sorted(p.name for p in PACKAGES_DIR.iterdir() if (p / "pyproject.toml").is_file())

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
# Keep XLA and TensorFlow quiet and single-host in tests; tests that need several CPU devices
# set XLA_FLAGS themselves before importing jax.
# TF_USE_LEGACY_KERAS: no test uses tf.keras; with it set (and tf_keras not installed)
# `import tensorflow` skips its eager Keras import, 4-6 s of CPU in every test process.
# PYTHONDONTWRITEBYTECODE is empty (Python reads only a non-empty value): the test processes,
# and the `synthaug` processes they start, write the bytecode of what they import into the
# session's venv once, instead of compiling JAX's and TensorFlow's sources again in every
# process (about 4.5 s of CPU each where the variable is set, as in some containers).
TEST_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONHASHSEED": "0",
    "TF_USE_LEGACY_KERAS": "1",
    "PYTHONDONTWRITEBYTECODE": "",
}


def _synthaug_deps(pkg: str) -> list[str]:
    """The synthaug packages `pkg` depends on, transitively, as directory names."""
    seen: list[str] = []
    todo = [pkg]
    while todo:
        name = todo.pop()
        meta = tomllib.loads((PACKAGES_DIR / name / "pyproject.toml").read_text())
        for req in meta["project"].get("dependencies", []):
            m = re.match(r"\s*synthaug-([a-z0-9-]+)", req)
            if m and m.group(1) not in seen:
                seen.append(m.group(1))
                todo.append(m.group(1))
    return seen


def _install_local(session: nox.Session, pkgs: list[str], *, with_test: str | None = None) -> None:
    """Install local packages (not editable: the wheel is what users get).

    ``with_test`` names the one package whose ``test`` extra is installed too.
    """
    args = [f"{PACKAGES_DIR / p}[test]" if p == with_test else str(PACKAGES_DIR / p) for p in pkgs]
    if session.venv_backend == "uv":
        # uv caches local builds by pyproject mtime; force a rebuild of our own packages.
        for p in pkgs:
            args += ["--reinstall-package", f"synthaug-{p}"]
    session.install(*args)


def _pytest_args(session: nox.Session) -> list[str]:
    workers = os.environ.get("SYNTHAUG_TEST_WORKERS", "2")
    args = ["--import-mode=importlib", "-p", "no:cacheprovider"]
    if workers not in ("0", "1"):
        args += ["-n", workers, "--dist", "loadfile"]
    return args + list(session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("pkg", PACKAGES)
def unit(session: nox.Session, pkg: str) -> None:
    """One package's unit tests in a venv that holds only it and its declared dependencies."""
    deps = _synthaug_deps(pkg)
    _install_local(session, [pkg, *deps], with_test=pkg)
    session.chdir(PACKAGES_DIR / pkg)
    session.run("pytest", "tests", *_pytest_args(session), env=TEST_ENV)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Cross-package tests: the pipeline end to end at toy scale, the workspace checker."""
    _install_local(session, PACKAGES)
    session.install("pytest>=8.0", "pytest-xdist>=3.5")
    session.run("pytest", "tests_integration", *_pytest_args(session), env=TEST_ENV)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Every package's unit tests (each in its own venv), then the integration tests."""
    for pkg in PACKAGES:
        session.notify(f"unit(pkg='{pkg}')", posargs=session.posargs)
    session.notify("integration", posargs=session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and the workspace structure check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tools/check_workspace.py")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the paper's pipeline at toy scale on the embedded digits data."""
    _install_local(session, PACKAGES)
    args = session.posargs or []
    session.run("synthaug", "demo", "--out", "demo_out", *args, env={"TF_CPP_MIN_LOG_LEVEL": "2"})


@nox.session(python=PYTHON, venv_backend="virtualenv")
def bench(session: nox.Session) -> None:
    """Benchmarks against their peers in the same run; writes bench/results.json and RESULTS.md.

    Uses pip (not uv) so that the pinned CPU-capable torch wheels on the local disk are found.
    """
    # A reused venv whose requirements and package sources are unchanged is not reinstalled
    # (building the eight local wheels takes about a minute).
    stamp = pathlib.Path(session.virtualenv.location) / ".synthaug-bench-stamp"
    digest = _sources_digest()
    if not stamp.is_file() or stamp.read_text() != digest:
        session.install("-r", "tools/bench/requirements.txt")
        # one pip call: the packages depend on each other by name and resolve from these paths
        session.install(*(str(PACKAGES_DIR / p) for p in PACKAGES))
        stamp.write_text(digest)
    session.run("python", "tools/bench/run.py", *session.posargs, env={"TF_CPP_MIN_LOG_LEVEL": "2"})


def _sources_digest() -> str:
    """A hash of the bench requirements and every file of every package's pyproject and src/."""
    h = hashlib.sha256((ROOT / "tools" / "bench" / "requirements.txt").read_bytes())
    for pkg in PACKAGES:
        root = PACKAGES_DIR / pkg
        for f in sorted([root / "pyproject.toml", *(root / "src").rglob("*")]):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


@nox.session(python=PYTHON, venv_backend="virtualenv")
def fixtures(session: nox.Session) -> None:
    """Regenerate the golden fixture files from the reference implementations (needs torch)."""
    session.install("-r", "tools/bench/requirements.txt")
    # DeepFloyd IF's original model code (make_if_lowres_augmentation.py): its metadata pins
    # torch<2 and diffusers~=0.16, while the model modules used need only torch and numpy.
    session.install("--no-deps", "deepfloyd-if==1.0.1")
    scripts = sorted((ROOT / "tools" / "fixtures").glob("make_*.py"))
    for script in scripts:
        if session.posargs and not any(a in script.name for a in session.posargs):
            continue
        session.run("python", str(script))
