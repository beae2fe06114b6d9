"""The ``synthaug-launch`` command.

    synthaug-launch local -n 2 -k 2 -- python train.py ...   # N processes x K CPU devices here
    synthaug-launch tpu --name NAME --zone ZONE --accelerator-type v4-256 \\
        --copy . --dry-run -- synthaug train ...               # a Cloud TPU VM slice
    synthaug-launch selftest                                   # psum + sharded training check
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .local import launch_local
from .tpu import TpuSlice, plan_tpu_run, run_steps

__all__ = ["build_parser", "main"]

PROG = "synthaug-launch"


def _command(values: Sequence[str]) -> list[str]:
    cmd = list(values)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return cmd


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env must look like KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``synthaug-launch`` (subcommands local, tpu, selftest)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Launch synthaug programs as multi-process JAX jobs: locally or on TPU pods.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True)

    local = sub.add_parser(
        "local",
        help="run N processes on this machine with a localhost coordinator",
        description="Start N copies of COMMAND as one multi-process JAX job on this machine.",
    )
    local.add_argument("-n", "--num-processes", type=int, required=True)
    local.add_argument(
        "-k", "--devices-per-process", type=int, default=1, help="CPU devices per process"
    )
    local.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    local.add_argument(
        "--platform",
        default="cpu",
        help="JAX_PLATFORMS for the processes (default cpu; 'inherit' leaves it)",
    )
    local.add_argument("--timeout", type=float, default=None, help="stop everything after S s")
    local.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    local.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")

    tpu = sub.add_parser(
        "tpu",
        help="create a Cloud TPU VM slice, run a command on all workers, delete the slice",
        description=(
            "Build (and unless --dry-run, run) the gcloud commands of one job on a Cloud TPU "
            "VM slice: create, copy and install the project, run COMMAND on all workers, "
            "delete."
        ),
    )
    tpu.add_argument("--name", required=True, help="TPU name")
    tpu.add_argument("--zone", required=True, help="e.g. us-central2-b")
    tpu.add_argument("--project", default=None, help="Cloud project (default: gcloud config)")
    tpu.add_argument("--accelerator-type", required=True, help="e.g. v4-8, v4-256")
    tpu.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM software version")
    tpu.add_argument("--spot", action="store_true")
    tpu.add_argument("--preemptible", action="store_true")
    tpu.add_argument("--network", default=None)
    tpu.add_argument("--subnetwork", default=None)
    tpu.add_argument("--copy", default=None, metavar="DIR", help="directory to copy to workers")
    tpu.add_argument("--remote-dir", default="synthaug", help="where --copy lands (remote ~)")
    tpu.add_argument(
        "--no-install-project",
        action="store_true",
        help="do not pip-install the packages/* of the copied directory",
    )
    tpu.add_argument("--jax-requirement", default="jax[tpu]")
    tpu.add_argument("--pip", action="append", default=[], help="extra pip requirement")
    tpu.add_argument("--setup", action="append", default=[], help="shell command before COMMAND")
    tpu.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    tpu.add_argument("--skip-create", action="store_true", help="reuse an existing slice")
    tpu.add_argument("--keep", action="store_true", help="do not delete the slice at the end")
    tpu.add_argument("--gcloud", default="gcloud", help="the gcloud program")
    tpu.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    tpu.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")

    sub.add_parser(
        "selftest",
        add_help=False,
        help="check this process's part of a multi-process job (psum, sharded training)",
    )
    return parser


def _run_local(args: argparse.Namespace) -> int:
    command = _command(args.command)
    if not command:
        raise ValueError("local needs a command after '--', e.g. -- python train.py")
    platform = None if args.platform in ("inherit", "") else args.platform

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return launch_local(
            command,
            num_processes=args.num_processes,
            devices_per_process=args.devices_per_process,
            port=args.port,
            platform=platform,
            env=_env_pairs(args.env),
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; all processes stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_tpu(args: argparse.Namespace) -> int:
    command = _command(args.command)
    tpu = TpuSlice(
        name=args.name,
        zone=args.zone,
        accelerator_type=args.accelerator_type,
        version=args.version,
        project=args.project,
        spot=args.spot,
        preemptible=args.preemptible,
        network=args.network,
        subnetwork=args.subnetwork,
        gcloud=args.gcloud,
    )
    steps = plan_tpu_run(
        tpu,
        command,
        copy=args.copy,
        remote_dir=args.remote_dir,
        pip=args.pip,
        install_project=not args.no_install_project,
        jax_requirement=args.jax_requirement,
        setup=args.setup,
        env=args.env,
        create=not args.skip_create,
        delete=not args.keep,
    )
    return run_steps(steps, dry_run=args.dry_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synthaug-launch``.

    Args:
      argv: arguments without the program name (default `sys.argv[1:]`).

    Returns:
      The exit status (0 on success); errors in the input are printed as one line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "selftest":
        from .selftest import main as selftest_main

        return selftest_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.subcommand == "local":
            return _run_local(args)
        return _run_tpu(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
