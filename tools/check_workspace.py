#!/usr/bin/env python3
"""Check the structure of the synthaug monorepo.

Fails (exit 1, one line per problem) when

* a package lacks ``pyproject.toml``, ``tests/``, ``README.md``, ``CHANGELOG.md`` or its
  ``src/synthaug/<name>/`` module, or has a ``src/synthaug/__init__.py`` (synthaug is a
  PEP 420 namespace package);
* a package's distribution name is not ``synthaug-<directory>``;
* a package (its ``src/`` or its ``tests/``) imports a synthaug package it does not declare
  as a dependency;
* the declared dependencies between packages are not the DAG of DESIGN.md: the leaves
  import no other synthaug package, ``samplers`` depends on ``diffusion-core`` only, and only
  ``pipeline`` may depend on several;
* a model, sampler or metric package imports TensorFlow.

Usage: ``python tools/check_workspace.py [ROOT]`` (default: the repository root).
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys
import tomllib

# The DAG of DESIGN.md: for each package, the synthaug packages it may depend on.
ALLOWED_DEPS: dict[str, set[str]] = {
    # The shared I/O leaf: every other package may depend on it, it on none.
    "io": set(),
    "diffusion-core": {"io"},
    "samplers": {"diffusion-core", "io"},
    "text-encoder": {"io"},
    "classifiers": {"io"},
    "metrics": {"io"},
    "imagenet-data": {"io"},
    "tpu-launch": {"io"},
    "pipeline": {
        "io",
        "diffusion-core",
        "samplers",
        "text-encoder",
        "classifiers",
        "metrics",
        "imagenet-data",
        "tpu-launch",
    },
}
# Packages that must not import TensorFlow (it is for input pipelines only).
NO_TENSORFLOW = {"diffusion-core", "samplers", "text-encoder", "classifiers", "metrics"}
REQUIRED = ("pyproject.toml", "README.md", "CHANGELOG.md")


def module_name(pkg: str) -> str:
    return pkg.replace("-", "_")


def declared_deps(pyproject: pathlib.Path) -> tuple[str, set[str]]:
    meta = tomllib.loads(pyproject.read_text())
    project = meta.get("project", {})
    deps = set()
    for req in project.get("dependencies", []):
        m = re.match(r"\s*synthaug-([a-z0-9-]+)", req)
        if m:
            deps.add(m.group(1))
    return project.get("name", ""), deps


def imported_synthaug(py_files) -> dict[str, set[str]]:
    """Map of imported synthaug module name -> files importing it."""
    found: dict[str, set[str]] = {}
    for f in py_files:
        try:
            tree = ast.parse(f.read_text(), filename=str(f))
        except SyntaxError as e:
            found.setdefault("<syntax error>", set()).add(f"{f}: {e}")
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "synthaug":
                    names = [f"synthaug.{a.name}" for a in node.names]
            for n in names:
                parts = n.split(".")
                if parts[0] == "synthaug" and len(parts) > 1:
                    found.setdefault(parts[1], set()).add(str(f))
                elif parts[0] == "tensorflow":
                    found.setdefault("<tensorflow>", set()).add(str(f))
    return found


def check(root: pathlib.Path) -> list[str]:
    problems: list[str] = []
    pkg_dir = root / "packages"
    if not pkg_dir.is_dir():
        return [f"{pkg_dir}: no packages/ directory"]
    packages = sorted(p.name for p in pkg_dir.iterdir() if p.is_dir())
    mod_to_pkg = {module_name(p): p for p in packages}
    for name in sorted(set(ALLOWED_DEPS) - set(packages)):
        problems.append(f"packages/{name}: missing (DESIGN.md lists it)")
    graph: dict[str, set[str]] = {}
    for pkg in packages:
        p = pkg_dir / pkg
        for req in REQUIRED:
            if not (p / req).is_file():
                problems.append(f"packages/{pkg}: missing {req}")
        if not (p / "tests").is_dir():
            problems.append(f"packages/{pkg}: missing tests/")
        elif not any((p / "tests").rglob("test_*.py")):
            problems.append(f"packages/{pkg}: tests/ holds no test_*.py file")
        if not (p / "src" / "synthaug" / module_name(pkg)).is_dir():
            problems.append(f"packages/{pkg}: missing src/synthaug/{module_name(pkg)}/")
        if (p / "src" / "synthaug" / "__init__.py").exists():
            problems.append(
                f"packages/{pkg}: src/synthaug/__init__.py exists; synthaug must stay a "
                "PEP 420 namespace package"
            )
        if pkg not in ALLOWED_DEPS:
            problems.append(f"packages/{pkg}: not a package of DESIGN.md's DAG")
        if not (p / "pyproject.toml").is_file():
            continue
        dist, deps = declared_deps(p / "pyproject.toml")
        if dist != f"synthaug-{pkg}":
            problems.append(
                f"packages/{pkg}: distribution name is {dist!r}, expected 'synthaug-{pkg}'"
            )
        graph[pkg] = deps
        for d in sorted(deps - set(packages)):
            problems.append(f"packages/{pkg}: declares synthaug-{d}, which is not a package here")
        allowed = ALLOWED_DEPS.get(pkg, set())
        for d in sorted(deps - allowed):
            problems.append(
                f"packages/{pkg}: depends on synthaug-{d}, which the DAG of DESIGN.md forbids "
                f"(allowed: {sorted(allowed) or 'none'})"
            )
        files = [f for sub in ("src", "tests") for f in (p / sub).rglob("*.py")]
        for mod, where in sorted(imported_synthaug(files).items()):
            if mod == "<syntax error>":
                problems.extend(f"packages/{pkg}: cannot parse {w}" for w in sorted(where))
                continue
            if mod == "<tensorflow>":
                if pkg in NO_TENSORFLOW:
                    problems.append(
                        f"packages/{pkg}: imports tensorflow ({sorted(where)[0]}); TensorFlow is "
                        "for input pipelines only"
                    )
                continue
            target = mod_to_pkg.get(mod)
            if target is None:
                problems.append(
                    f"packages/{pkg}: imports unknown synthaug.{mod} ({sorted(where)[0]})"
                )
            elif target != pkg and target not in deps:
                problems.append(
                    f"packages/{pkg}: imports synthaug.{mod} ({sorted(where)[0]}) but does not "
                    f"declare synthaug-{target}"
                )
    cycle = _find_cycle(graph)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if state.get(m) is None:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None:
            c = visit(n)
            if c:
                return c
    return None


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1]) if len(argv) > 1 else pathlib.Path(__file__).resolve().parents[1]
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"workspace check: {len(problems)} problem(s)")
        return 1
    print(f"workspace check: {len(list((root / 'packages').iterdir()))} packages OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
