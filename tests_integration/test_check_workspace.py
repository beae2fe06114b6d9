"""tools/check_workspace.py on the real repository and on deliberately broken copies."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "check_workspace.py"

spec = importlib.util.spec_from_file_location("check_workspace", SCRIPT)
cw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cw)


def _make_pkg(root: pathlib.Path, name: str, deps=(), imports=()) -> pathlib.Path:
    p = root / "packages" / name
    mod = name.replace("-", "_")
    (p / "src" / "synthaug" / mod).mkdir(parents=True)
    (p / "tests").mkdir()
    dep_lines = ", ".join(f'"synthaug-{d}>=0.1.0"' for d in deps)
    (p / "pyproject.toml").write_text(
        f'[project]\nname = "synthaug-{name}"\nversion = "0.1.0"\ndependencies = [{dep_lines}]\n'
    )
    (p / "README.md").write_text("readme\n")
    (p / "CHANGELOG.md").write_text("changes\n")
    body = "".join(f"import synthaug.{i.replace('-', '_')}\n" for i in imports)
    (p / "src" / "synthaug" / mod / "__init__.py").write_text(body)
    (p / "tests" / "test_it.py").write_text("def test_x():\n    assert 1 + 1 == 2\n")
    return p


@pytest.fixture()
def workspace(tmp_path):
    for name, deps in cw.ALLOWED_DEPS.items():
        _make_pkg(tmp_path, name, deps=sorted(deps), imports=sorted(deps))
    return tmp_path


def test_real_repository_passes():
    assert cw.check(ROOT) == []


def test_valid_workspace_passes(workspace):
    assert cw.check(workspace) == []
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(workspace)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout


def test_undeclared_import_fails(workspace):
    mod = workspace / "packages/metrics/src/synthaug/metrics/__init__.py"
    mod.write_text("from synthaug.classifiers import resnet\n")
    problems = cw.check(workspace)
    assert any("metrics" in p and "does not declare synthaug-classifiers" in p for p in problems)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(workspace)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "synthaug-classifiers" in out.stdout


def test_undeclared_import_in_tests_fails(workspace):
    (workspace / "packages/samplers/tests/test_it.py").write_text("import synthaug.metrics\n")
    assert any("samplers" in p and "synthaug-metrics" in p for p in cw.check(workspace))


def test_edge_outside_the_dag_fails(workspace):
    _rm(workspace / "packages/classifiers")
    _make_pkg(workspace, "classifiers", deps=["metrics"], imports=["metrics"])
    problems = cw.check(workspace)
    assert any("classifiers: depends on synthaug-metrics" in p for p in problems)


def test_cycle_is_reported(workspace):
    _rm(workspace / "packages/diffusion-core")
    _make_pkg(workspace, "diffusion-core", deps=["samplers"])
    problems = cw.check(workspace)
    assert any(p.startswith("dependency cycle:") for p in problems)


@pytest.mark.parametrize("missing", ["tests", "README.md", "CHANGELOG.md"])
def test_missing_parts_fail(workspace, missing):
    _rm(workspace / "packages/tpu-launch" / missing)
    assert any(f"tpu-launch: missing {missing}" in p for p in cw.check(workspace))


def test_namespace_init_fails(workspace):
    (workspace / "packages/samplers/src/synthaug/__init__.py").write_text("")
    assert any("namespace package" in p for p in cw.check(workspace))


def test_tensorflow_in_model_package_fails(workspace):
    (workspace / "packages/metrics/src/synthaug/metrics/io.py").write_text(
        "import tensorflow as tf\n"
    )
    assert any("metrics: imports tensorflow" in p for p in cw.check(workspace))
    # ... but the data layer may use it.
    (workspace / "packages/imagenet-data/src/synthaug/imagenet_data/io.py").write_text(
        "import tensorflow as tf\n"
    )
    assert not any("imagenet-data" in p for p in cw.check(workspace))


def test_wrong_distribution_name_fails(workspace):
    pp = workspace / "packages/metrics/pyproject.toml"
    pp.write_text(pp.read_text().replace("synthaug-metrics", "metrics"))
    assert any("distribution name is 'metrics'" in p for p in cw.check(workspace))


def _rm(path: pathlib.Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
