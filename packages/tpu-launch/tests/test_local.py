"""The local launcher and real multi-process runs (2 processes x 2 CPU devices)."""

import io
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from synthaug.tpu_launch import child_environment, free_port, launch_local, make_mesh
from synthaug.tpu_launch.cli import main
from synthaug.tpu_launch.selftest import (
    _config_key,
    default_mesh_configs,
    global_process_psum,
    tiny_mlp_init,
    train_tiny,
)

STEPS, GLOBAL_BATCH = 3, 16


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether ``pid`` has exited (or is a zombie waiting to be reaped) within some seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def multiprocess_run(tmp_path_factory):
    """The self-test as a 2-process x 2-device job through the console entry point."""
    out = tmp_path_factory.mktemp("mp")
    port = free_port()
    cmd = [sys.executable, "-m", "synthaug.tpu_launch.cli", "local", "-n", "2", "-k", "2"]
    cmd += ["--port", str(port), "--timeout", "240", "--"]
    cmd += [sys.executable, "-m", "synthaug.tpu_launch.cli", "selftest", "--out", str(out)]
    cmd += ["--steps", str(STEPS), "--global-batch", str(GLOBAL_BATCH)]
    # Flags that agree with the launcher's environment variables (checked on both sides).
    cmd += ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        stdout, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # the launcher hung: SIGTERM lets it stop its children
            proc.terminate()
            proc.communicate(timeout=30)
    return proc.returncode, stdout, out


def test_multiprocess_psum_and_prefixed_output(multiprocess_run):
    rc, stdout, _ = multiprocess_run
    assert rc == 0, stdout
    assert "[p0] process 0/2 (explicit): 2 local of 4 cpu devices" in stdout
    assert "[p1] process 1/2 (explicit): 2 local of 4 cpu devices" in stdout
    # Each device holds its process index + 1: 2 * 1 + 2 * 2.
    assert "[p0] psum of process_index + 1 over devices: 6 (expected 6)" in stdout
    assert "[p1] psum of process_index + 1 over devices: 6 (expected 6)" in stdout
    # Per-host data sharding: two shards under data parallelism, one when the only split
    # axis is the model axis (both hosts read the same batch).
    assert "[p1] mesh {'data': 4, 'fsdp': 1, 'model': 1}: host shard 1/2" in stdout
    assert "[p1] mesh {'data': 1, 'fsdp': 2, 'model': 2}: host shard 1/2" in stdout
    assert "[p1] mesh {'data': 1, 'fsdp': 1, 'model': 4}: host shard 0/1" in stdout
    assert "[p0] selftest passed" in stdout and "[p1] selftest passed" in stdout


def test_multiprocess_training_equals_single_process_runs(multiprocess_run):
    rc, stdout, out = multiprocess_run
    assert rc == 0, stdout
    results = np.load(out / "results.npz")
    assert float(results["psum"]) == 6.0
    # 1 device, one process: the reference.
    ref_params, ref_losses = train_tiny(
        make_mesh({"data": 1, "fsdp": 1, "model": 1}, devices=jax.devices()[:1]),
        steps=STEPS,
        global_batch=GLOBAL_BATCH,
    )
    ref = {
        "/".join(str(k.key) for k in p): np.asarray(v)
        for p, v in jax.tree_util.tree_flatten_with_path(ref_params)[0]
    }
    assert len(ref) == 4
    configs = default_mesh_configs(4)
    assert len(configs) == 4
    for axes in configs:
        key = _config_key(dict(make_mesh(axes).shape))
        # The same mesh in one process with 4 devices.
        params, losses = train_tiny(make_mesh(axes), steps=STEPS, global_batch=GLOBAL_BATCH)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        np.testing.assert_allclose(results[f"{key}/losses"], ref_losses, rtol=1e-5)
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        for path, value in leaves:
            name = "/".join(str(k.key) for k in path)
            mp = results[f"{key}/{name}"]
            assert mp.shape == ref[name].shape
            np.testing.assert_allclose(np.asarray(value), ref[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(mp, ref[name], rtol=1e-5, atol=1e-6)
    # Training moved the parameters: the runs agree on trained values, not initial ones.
    init = tiny_mlp_init(0)
    for layer in ("dense1", "dense2"):
        for leaf in ("kernel", "bias"):
            moved = np.abs(ref[f"{layer}/{leaf}"] - init[layer][leaf]).max()
            assert moved > 1e-3, (layer, leaf, moved)


def test_psum_in_one_process_counts_every_device():
    assert global_process_psum(make_mesh({"data": 2, "model": 2})) == 4.0


def test_child_environment():
    base = {"XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=4", "KEEP": "x"}
    env = child_environment(
        base,
        process_id=1,
        num_processes=3,
        coordinator_address="127.0.0.1:5555",
        devices_per_process=2,
        platform="cpu",
        extra={"EXTRA": "y"},
    )
    assert env["XLA_FLAGS"].split() == ["--xla_foo=1", "--xla_force_host_platform_device_count=2"]
    assert (env["JAX_PROCESS_ID"], env["JAX_NUM_PROCESSES"]) == ("1", "3")
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:5555"
    assert (env["JAX_PLATFORMS"], env["KEEP"], env["EXTRA"]) == ("cpu", "x", "y")
    assert base["XLA_FLAGS"].endswith("=4")  # the base is not modified


def test_launcher_streams_prefixed_output_in_order():
    code = "import os\nfor i in range(3): print(f'line {i} of', os.environ['JAX_PROCESS_ID'])"
    out = io.StringIO()
    rc = launch_local([sys.executable, "-c", code], num_processes=3, out=out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    for p in range(3):
        mine = [ln for ln in lines if ln.startswith(f"[p{p}] ")]
        assert mine == [f"[p{p}] line {i} of {p}" for i in range(3)]


def test_a_failing_process_stops_the_others(tmp_path):
    # Process 0 starts a grandchild and sleeps; process 1 fails once process 0 is running.
    code = textwrap.dedent(
        f"""
        import os, pathlib, subprocess, sys, time
        d = pathlib.Path({str(tmp_path)!r})
        if os.environ["JAX_PROCESS_ID"] == "0":
            g = subprocess.Popen(["sleep", "120"])
            (d / "pids.tmp").write_text(f"{{os.getpid()}} {{g.pid}}")
            os.replace(d / "pids.tmp", d / "pids")
            print("sleeping", flush=True)
            time.sleep(120)
        else:
            while not (d / "pids").exists():
                time.sleep(0.05)
            print("failing", flush=True)
            sys.exit(3)
        """
    )
    out = io.StringIO()
    start = time.monotonic()
    rc = launch_local([sys.executable, "-c", code], num_processes=2, out=out, grace_period=2)
    elapsed = time.monotonic() - start
    assert rc == 3
    assert elapsed < 60
    text = out.getvalue()
    assert "[p1] failing" in text
    assert "[synthaug-launch] process 1 failed first: exit code 3; stopping the other 1" in text
    child, grandchild = map(int, (tmp_path / "pids").read_text().split())
    assert _gone(child) and _gone(grandchild)


def test_timeout_stops_everything():
    out = io.StringIO()
    cmd = [sys.executable, "-c", "import time; time.sleep(120)"]
    start = time.monotonic()
    rc = launch_local(cmd, num_processes=2, timeout=1.0, grace_period=1, out=out)
    assert rc == 124
    assert time.monotonic() - start < 30
    assert "timeout after 1 s" in out.getvalue()


def test_cli_local_errors_are_one_line(capsys):
    assert main(["local", "-n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "synthaug-launch: error: local needs a command after '--', e.g. -- python train.py"
    ]
    assert main(["local", "-n", "0", "--", "true"]) == 2
    assert "num_processes must be >= 1" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        launch_local(["/nonexistent/program"], num_processes=1)


def test_cli_local_returns_the_child_exit_code(capsys):
    rc = main(["local", "-n", "2", "--", sys.executable, "-c", "import sys; sys.exit(5)"])
    assert rc == 5


def test_console_script_is_declared():
    from importlib import metadata

    eps = metadata.entry_points(group="console_scripts")
    ep = next(e for e in eps if e.name == "synthaug-launch")
    assert ep.value == "synthaug.tpu_launch.cli:main"
    assert pathlib.Path(os.path.dirname(sys.executable), "synthaug-launch").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_children_do_not_outlive_the_launcher(tmp_path, sig):
    code = textwrap.dedent(
        f"""
        import os, pathlib, time
        d = pathlib.Path({str(tmp_path)!r})
        (d / "tmp{{}}".format(os.environ["JAX_PROCESS_ID"])).write_text(str(os.getpid()))
        os.replace(d / "tmp{{}}".format(os.environ["JAX_PROCESS_ID"]),
                   d / "pid{{}}".format(os.environ["JAX_PROCESS_ID"]))
        time.sleep(120)
        """
    )
    cmd = [sys.executable, "-m", "synthaug.tpu_launch.cli", "local", "-n", "2", "--"]
    launcher = subprocess.Popen(
        [*cmd, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("pid*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(p.read_text()) for p in sorted(tmp_path.glob("pid*"))]
        assert len(pids) == 2
        launcher.send_signal(sig)
        launcher.communicate(timeout=30)
        assert launcher.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert all(_gone(pid) for pid in pids)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()


def _records(tmp_path, **records):
    for pid, line in records.items():
        (tmp_path / pid.lstrip("p")).write_text(line + "\n")
    return str(tmp_path)


def test_the_process_that_failed_first_is_blamed_whatever_order_exits_are_seen(tmp_path):
    # Process 1 exits with 2 and records it; process 0 stops because of it and exits with 1,
    # and its exit is observed first.
    from synthaug.tpu_launch.local import _first_failure

    directory = _records(tmp_path, p1="100.5 2 first", p0="100.9 1 stopped")
    exits = [(0, 1), (1, 2)]
    lock = threading.Lock()
    assert _first_failure([(0, 1)], directory, exits, lock, 2) == (1, 2)


def test_the_earliest_first_record_wins_and_a_signal_death_comes_before_records(tmp_path):
    from synthaug.tpu_launch.local import _first_failure

    lock = threading.Lock()
    directory = _records(tmp_path, p0="200.0 1 first", p2="199.0 3 first")
    exits = [(0, 1), (2, 3)]
    assert _first_failure([(0, 1)], directory, exits, lock, 3, settle=0.1) == (2, 3)
    # A killed process leaves no record; the survivor that noticed it believes it came first.
    exits = [(0, 1), (1, -9)]
    assert _first_failure([(0, 1)], directory, exits, lock, 3, settle=0.1) == (1, -9)


def test_without_records_the_first_exit_not_marked_stopped_is_blamed(tmp_path):
    from synthaug.tpu_launch.local import _first_failure

    lock = threading.Lock()
    directory = _records(tmp_path, p0="5.0 1 stopped")
    exits = [(0, 1), (1, 4)]
    assert _first_failure([(0, 1), (1, 4)], directory, exits, lock, 2, settle=0.1) == (
        1,
        4,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _first_failure([(0, 1)], str(empty), [(0, 1)], lock, 1, settle=0.1) == (0, 1)
