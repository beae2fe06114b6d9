"""Run N processes of one program on this machine as a multi-process JAX job.

Each process gets ``JAX_COORDINATOR_ADDRESS`` (a free localhost port), ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` (read by `synthaug.tpu_launch.initialize`) and, on CPU,
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` so that it sees K devices. Their
output is streamed line by line with a ``[pI]`` prefix. When one process fails, the others
are stopped and the launcher returns that process's exit code; no child outlives it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

from ._env import ENV_COORDINATOR_ADDRESS, ENV_FAILURE_DIR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

__all__ = ["TIMEOUT_EXIT_CODE", "child_environment", "free_port", "launch_local"]

#: Exit code when the job runs past its timeout (as coreutils ``timeout``).
TIMEOUT_EXIT_CODE = 124

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_environment(
    base: Mapping[str, str],
    *,
    process_id: int,
    num_processes: int,
    coordinator_address: str,
    devices_per_process: int | None,
    platform: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one launched process.

    Args:
      base: the environment to start from (usually `os.environ`).
      process_id: index of the process.
      num_processes: number of processes.
      coordinator_address: ``host:port`` of process 0.
      devices_per_process: CPU devices per process (sets
        ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``), or ``None`` to leave it.
      platform: value for ``JAX_PLATFORMS`` (e.g. ``"cpu"``), or ``None`` to leave it.
      extra: further variables, applied last.

    Returns:
      A new environment dict.
    """
    env = dict(base)
    env[ENV_COORDINATOR_ADDRESS] = coordinator_address
    env[ENV_NUM_PROCESSES] = str(num_processes)
    env[ENV_PROCESS_ID] = str(process_id)
    env["PYTHONUNBUFFERED"] = "1"
    if devices_per_process is not None:
        flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).split()
        flags.append(f"--xla_force_host_platform_device_count={int(devices_per_process)}")
        env["XLA_FLAGS"] = " ".join(flags)
    if platform is not None:
        env["JAX_PLATFORMS"] = platform
    if extra:
        env.update(extra)
    return env


# Runs in each child before the real program replaces it (exec keeps the pid): on Linux it
# asks the kernel to SIGKILL the child when the launcher dies, so a crashed or killed
# launcher leaves no orphans. (A preexec_fn would do the same but forces a plain fork of a
# possibly multithreaded launcher.)
_EXEC_WRAPPER = """\
import os, signal, sys
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(sys.argv[1]):
        sys.exit(137)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _pump(stream: IO[bytes], prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        with lock:
            out.write(f"{prefix}{line}\n")
            out.flush()
    stream.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        # The leader is gone; its group may still hold grandchildren.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], grace_period: float) -> None:
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    for p in procs:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            p.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        _signal_group(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5.0)


def _read_failure_records(directory: str) -> dict[int, tuple[float, int, bool]]:
    """``process index -> (stamp, exit code, failed first)`` from the records processes left."""
    records: dict[int, tuple[float, int, bool]] = {}
    for name in os.listdir(directory):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                stamp, code, kind = f.read().split()
            records[int(name)] = (float(stamp), int(code), kind == "first")
        except (OSError, ValueError):
            continue
    return records


def _first_failure(
    failed: list[tuple[int, int]],
    directory: str,
    exits: list[tuple[int, int]],
    exit_lock: threading.Lock,
    num_processes: int,
    settle: float = 1.0,
) -> tuple[int, int]:
    """The process to blame, and its exit code.

    Processes that stop because another one failed exit too, often within milliseconds of
    it, so the order in which exits are observed does not say which came first. A process
    that fails under `initialize_runtime` leaves a record saying whether it failed first or
    stopped because of an earlier failure; this waits up to ``settle`` seconds for the
    records of the processes that have exited, then blames the earliest that failed first.
    A process killed by a signal leaves no record and is blamed before any that do (the
    others notice only after it died).
    Without such a record the first observed exit of a process that did not record that it
    stopped because of another (one killed by a signal, a program that does not use the
    runtime) is blamed.
    """
    deadline = time.monotonic() + settle
    while True:
        records = _read_failure_records(directory)
        with exit_lock:
            done = dict(exits)
        signalled = [(i, c) for i, c in done.items() if c < 0]
        if signalled:  # it left no record; the others' failures followed from it
            return signalled[0]
        firsts = sorted((stamp, i, code) for i, (stamp, code, first) in records.items() if first)
        exited_failed = [i for i, c in done.items() if c != 0]
        if firsts and all(i in records for i in exited_failed):
            _, i, code = firsts[0]
            return i, done.get(i, code)
        if time.monotonic() > deadline or len(done) == num_processes:
            break
        time.sleep(0.02)
    if firsts:
        _, i, code = firsts[0]
        return i, done.get(i, code)
    for i, code in failed:
        if i not in records:  # killed, or not under the runtime: not stopped by another
            return i, code
    return failed[0]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (exit code {128 - code})"
    return f"exit code {code}"


def launch_local(
    command: Sequence[str],
    *,
    num_processes: int,
    devices_per_process: int | None = 1,
    port: int | None = None,
    platform: str | None = "cpu",
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    grace_period: float = 5.0,
    out: IO[str] | None = None,
) -> int:
    """Start ``num_processes`` copies of ``command`` as one multi-process JAX job.

    Args:
      command: program and arguments, e.g. ``[sys.executable, "train.py"]``.
      num_processes: number of processes (>= 1).
      devices_per_process: CPU devices each process gets (``None``: leave ``XLA_FLAGS``).
      port: coordinator port on localhost (default: a free port).
      platform: ``JAX_PLATFORMS`` for the children (default ``"cpu"``; ``None`` leaves it).
      env: extra environment variables for every process.
      timeout: seconds after which every process is stopped (default: no limit).
      grace_period: seconds between SIGTERM and SIGKILL when stopping processes.
      out: text stream for the prefixed output (default `sys.stdout`).

    Returns:
      0 if every process exited with 0; otherwise the exit code of the process that failed
      first in time (a signal ``-N`` is reported as ``128 + N``), whose index the launcher's
      last line names, or `TIMEOUT_EXIT_CODE` on timeout.

    Raises:
      ValueError: an empty command or a non-positive process or device count.
      FileNotFoundError: the program does not exist.
    """
    if not command:
        raise ValueError("command must name a program to run, got an empty command")
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if devices_per_process is not None and devices_per_process < 1:
        raise ValueError(f"devices_per_process must be >= 1, got {devices_per_process}")
    program = shutil.which(command[0], path=(env or {}).get("PATH", os.environ.get("PATH")))
    if program is None:
        raise FileNotFoundError(f"command {command[0]!r} is not an executable program")
    out = sys.stdout if out is None else out
    port = free_port() if port is None else int(port)
    address = f"127.0.0.1:{port}"
    lock = threading.Lock()

    def note(msg: str) -> None:
        with lock:
            out.write(f"[synthaug-launch] {msg}\n")
            out.flush()

    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    failure_dir = tempfile.TemporaryDirectory(prefix="synthaug-launch-")
    try:
        wrapper = [sys.executable, "-I", "-S", "-c", _EXEC_WRAPPER, str(os.getpid())]
        for i in range(num_processes):
            child_env = child_environment(
                os.environ,
                process_id=i,
                num_processes=num_processes,
                coordinator_address=address,
                devices_per_process=devices_per_process,
                platform=platform,
                extra={ENV_FAILURE_DIR: failure_dir.name, **(env or {})},
            )
            procs.append(
                subprocess.Popen(
                    [*wrapper, program, *command[1:]],
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        width = len(str(num_processes - 1))
        for i, p in enumerate(procs):
            assert p.stdout is not None
            t = threading.Thread(
                target=_pump, args=(p.stdout, f"[p{i:0{width}d}] ", out, lock), daemon=True
            )
            t.start()
            threads.append(t)

        # Each process gets a waiter that records when it exited, so that the launcher
        # blames the process that failed first, not the one with the lowest index.
        exits: list[tuple[int, int]] = []
        exit_lock = threading.Lock()

        def waiter(i: int, p: subprocess.Popen[bytes]) -> None:
            code = p.wait()
            with exit_lock:
                exits.append((i, code))

        for i, p in enumerate(procs):
            threading.Thread(target=waiter, args=(i, p), daemon=True).start()

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with exit_lock:
                done = list(exits)
            failed = [(i, c) for i, c in done if c != 0]
            if failed:
                i, code = _first_failure(failed, failure_dir.name, exits, exit_lock, num_processes)
                with exit_lock:
                    others = num_processes - len(exits)
                note(
                    f"process {i} failed first: {_describe_exit(code)}"
                    + (f"; stopping the other {others}" if others else "")
                )
                _stop_all(procs, grace_period)
                return 128 - code if code < 0 else code
            if len(done) == num_processes:
                return 0
            if deadline is not None and time.monotonic() > deadline:
                note(f"timeout after {timeout:g} s; stopping all processes")
                _stop_all(procs, grace_period)
                return TIMEOUT_EXIT_CODE
            time.sleep(0.05)
    finally:
        _stop_all(procs, grace_period)
        for t in threads:
            t.join(timeout=5.0)
        failure_dir.cleanup()
