"""gcloud command lines for a run on a Cloud TPU VM slice.

A run is a list of steps: create the slice, copy the project onto every worker, install it,
run one command on all workers at once (JAX's multi-controller model: every host runs the
same program), and delete the slice. `plan_tpu_run` builds the steps; `run_steps` prints
them (dry run) or executes them, deleting the slice even when a later step fails.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO

__all__ = [
    "Step",
    "TpuSlice",
    "copy_command",
    "create_command",
    "delete_command",
    "plan_tpu_run",
    "run_steps",
    "ssh_command",
]


@dataclasses.dataclass(frozen=True)
class TpuSlice:
    """A Cloud TPU VM slice.

    Attributes:
      name: TPU name (``gcloud compute tpus tpu-vm create NAME``).
      zone: Cloud zone, e.g. ``us-central2-b`` (where v4 lives).
      accelerator_type: e.g. ``v4-8`` (one host) or ``v4-256`` (32 hosts, 128 chips).
      version: TPU VM software version (runtime image), e.g. ``tpu-ubuntu2204-base``.
      project: Cloud project (default: gcloud's configured project).
      spot: create a Spot TPU.
      preemptible: create a preemptible TPU (older form of Spot).
      network: VPC network name (optional).
      subnetwork: subnetwork name (optional).
      gcloud: the gcloud program.
    """

    name: str
    zone: str
    accelerator_type: str
    version: str = "tpu-ubuntu2204-base"
    project: str | None = None
    spot: bool = False
    preemptible: bool = False
    network: str | None = None
    subnetwork: str | None = None
    gcloud: str = "gcloud"

    def __post_init__(self) -> None:
        for field in ("name", "zone", "accelerator_type", "version"):
            value = getattr(self, field)
            if not value or not str(value).strip():
                raise ValueError(f"TPU slice {field} must be a non-empty string, got {value!r}")
        if self.spot and self.preemptible:
            raise ValueError("a TPU slice is either spot or preemptible, not both")

    def _location(self) -> list[str]:
        flags = [f"--zone={self.zone}"]
        if self.project:
            flags.append(f"--project={self.project}")
        return flags


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a TPU run.

    Attributes:
      what: short description (printed as a comment in dry runs).
      argv: the command line.
      cleanup: the step deletes the slice (runs even after a failed step).
      creates: the step creates the slice (if it fails, nothing else runs).
    """

    what: str
    argv: tuple[str, ...]
    cleanup: bool = False
    creates: bool = False

    def shell(self) -> str:
        """The command as one shell-quoted line."""
        return shlex.join(self.argv)


def create_command(tpu: TpuSlice) -> list[str]:
    """``gcloud compute tpus tpu-vm create`` for ``tpu``."""
    argv = [tpu.gcloud, "compute", "tpus", "tpu-vm", "create", tpu.name, *tpu._location()]
    argv += [f"--accelerator-type={tpu.accelerator_type}", f"--version={tpu.version}"]
    if tpu.spot:
        argv.append("--spot")
    if tpu.preemptible:
        argv.append("--preemptible")
    if tpu.network:
        argv.append(f"--network={tpu.network}")
    if tpu.subnetwork:
        argv.append(f"--subnetwork={tpu.subnetwork}")
    return argv


def copy_command(tpu: TpuSlice, source: str, remote_dir: str) -> list[str]:
    """``gcloud compute tpus tpu-vm scp --recurse`` of ``source`` to every worker."""
    return [
        tpu.gcloud,
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        "--recurse",
        source,
        f"{tpu.name}:{remote_dir}",
        "--worker=all",
        *tpu._location(),
    ]


def ssh_command(tpu: TpuSlice, remote_command: str) -> list[str]:
    """``gcloud compute tpus tpu-vm ssh --worker=all --command=...`` on every worker."""
    return [
        tpu.gcloud,
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        tpu.name,
        "--worker=all",
        *tpu._location(),
        f"--command={remote_command}",
    ]


def delete_command(tpu: TpuSlice) -> list[str]:
    """``gcloud compute tpus tpu-vm delete --quiet`` for ``tpu``."""
    return [
        tpu.gcloud,
        "compute",
        "tpus",
        "tpu-vm",
        "delete",
        tpu.name,
        *tpu._location(),
        "--quiet",
    ]


def _project_packages(source: str) -> list[str]:
    root = pathlib.Path(source).expanduser()
    return sorted(p.parent.name for p in root.glob("packages/*/pyproject.toml"))


def plan_tpu_run(
    tpu: TpuSlice,
    command: Sequence[str],
    *,
    copy: str | None = None,
    remote_dir: str = "synthaug",
    pip: Sequence[str] = (),
    install_project: bool = True,
    jax_requirement: str = "jax[tpu]",
    setup: Sequence[str] = (),
    env: Sequence[str] = (),
    create: bool = True,
    delete: bool = True,
) -> list[Step]:
    """The steps of one run on ``tpu``.

    Args:
      tpu: the slice.
      command: the program to run on every worker (argv; run in ``remote_dir`` if ``copy``).
      copy: local directory (e.g. this repository) to copy to ``remote_dir`` on every worker.
      remote_dir: destination of ``copy``, relative to the remote home directory.
      pip: further pip requirements to install on every worker.
      install_project: when ``copy`` holds ``packages/*/pyproject.toml``, install those
        packages (and ``jax_requirement``) on every worker.
      jax_requirement: the JAX requirement installed with the project.
      setup: raw shell commands to run on every worker before ``command``.
      env: ``KEY=VALUE`` pairs exported for ``command``.
      create: create the slice first (False: reuse an existing slice).
      delete: delete the slice at the end, also after a failure.

    Returns:
      The list of `Step`s in order.

    Raises:
      ValueError: an empty command, a malformed ``env`` entry, or a ``copy`` directory that
        does not exist.
    """
    if not command:
        raise ValueError("the command to run on the TPU workers is empty")
    steps: list[Step] = []
    if create:
        steps.append(Step("create the TPU slice", tuple(create_command(tpu)), creates=True))
    requirements: list[str] = []
    if copy is not None:
        if not pathlib.Path(copy).expanduser().is_dir():
            raise ValueError(f"--copy must be an existing directory, got {copy!r}")
        steps.append(
            Step("copy the project to every worker", tuple(copy_command(tpu, copy, remote_dir)))
        )
        if install_project:
            packages = _project_packages(copy)
            if packages:
                requirements.append(jax_requirement)
                requirements += [f"./{remote_dir}/packages/{p}" for p in packages]
    requirements += list(pip)
    if requirements:
        install = "python3 -m pip install --upgrade " + " ".join(
            shlex.quote(r) for r in requirements
        )
        steps.append(Step("install on every worker", tuple(ssh_command(tpu, install))))
    for cmd in setup:
        steps.append(Step("set up every worker", tuple(ssh_command(tpu, cmd))))
    exports = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"environment entries must look like KEY=VALUE, got {item!r}")
        exports.append(f"{key}={shlex.quote(value)}")
    remote = shlex.join(list(command))
    if exports:
        remote = "export " + " ".join(exports) + " && " + remote
    # pip installs console scripts (synthaug, synthaug-launch) for the user into
    # ~/.local/bin, which a non-interactive ssh shell does not have on its PATH.
    remote = 'export PATH="$HOME/.local/bin:$PATH" && ' + remote
    if copy is not None:
        remote = f"cd {shlex.quote(remote_dir)} && {remote}"
    steps.append(Step("run the command on all workers", tuple(ssh_command(tpu, remote))))
    if delete:
        steps.append(Step("delete the TPU slice", tuple(delete_command(tpu)), cleanup=True))
    return steps


def run_steps(
    steps: Sequence[Step],
    *,
    dry_run: bool = False,
    out: IO[str] | None = None,
    runner: Callable[[Sequence[str]], int] | None = None,
) -> int:
    """Print or execute ``steps``.

    When executing, the steps run in order until one fails; cleanup steps (deleting the
    slice) still run after a failure of any step but the first, so a failed run does not
    leave a paid slice behind (a failed create is not followed by a delete: the name may
    belong to an existing slice).

    Args:
      steps: from `plan_tpu_run`.
      dry_run: print the commands as a shell script instead of running them.
      out: stream for the printed commands (default `sys.stdout`).
      runner: runs one argv and returns its exit code (default: `subprocess.call`).

    Returns:
      0 on success, else the exit code of the first failed step.
    """
    out = sys.stdout if out is None else out
    if dry_run:
        for step in steps:
            out.write(f"# {step.what}\n{step.shell()}\n")
        out.flush()
        return 0
    run = runner if runner is not None else (lambda argv: subprocess.call(list(argv)))
    status = 0
    created_failed = False
    for step in steps:
        if status and (not step.cleanup or created_failed):
            continue
        out.write(f"[synthaug-launch] {step.what}: {step.shell()}\n")
        out.flush()
        try:
            code = run(step.argv)
        except FileNotFoundError as e:
            out.write(f"[synthaug-launch] cannot run {step.argv[0]!r}: {e}\n")
            code = 127
        if code and not status:
            status = code
            created_failed = step.creates
            out.write(f"[synthaug-launch] step failed with exit code {code}: {step.what}\n")
    out.flush()
    return status
