"""initialize_runtime, meshes and rules from config values, and fail-fast multi-process jobs."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import pytest
from jax.sharding import PartitionSpec as P

from synthaug.tpu_launch import (
    DistributedSettingsError,
    MeshShapeError,
    ShardingRuleError,
    detect_settings,
    free_port,
    initialize_runtime,
    is_multiprocess,
    managed_cluster_detected,
    mesh_from_config,
    rules_from_config,
    shardings_for,
)

JOB = str(pathlib.Path(__file__).with_name("_fault_job.py"))

SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[01-02]",
    "SLURM_NTASKS": "16",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "3",
}


def test_alone_the_runtime_does_nothing():
    hook = sys.excepthook
    s = initialize_runtime(environ={})
    assert (s.mode, s.num_processes, s.process_id) == ("single", 1, 0)
    assert not is_multiprocess()
    assert sys.excepthook is hook
    from jax._src import distributed as jd

    assert jd.global_state.client is None


def test_bad_heartbeat_timeout_is_one_clear_error():
    with pytest.raises(DistributedSettingsError, match="SYNTHAUG_HEARTBEAT_TIMEOUT.*'soon'"):
        initialize_runtime(environ={"SYNTHAUG_HEARTBEAT_TIMEOUT": "soon"})


def test_slurm_and_open_mpi_jobs_are_detected():
    assert managed_cluster_detected(SLURM) == "slurm"
    assert detect_settings(environ=SLURM).mode == "slurm"
    # One task (salloc, or srun -n 1) stays a single process.
    assert detect_settings(environ={**SLURM, "SLURM_NTASKS": "1"}).mode == "single"
    ompi = {"OMPI_MCA_orte_hnp_uri": "1234.0;tcp://10.0.0.1:5000", "OMPI_COMM_WORLD_SIZE": "4"}
    assert detect_settings(environ=ompi).mode == "ompi"
    assert detect_settings(environ={**ompi, "OMPI_COMM_WORLD_SIZE": "1"}).mode == "single"
    # Explicit settings (synthaug-launch local) win over a surrounding cluster.
    explicit = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert detect_settings(environ={**SLURM, **explicit}).mode == "explicit"


def test_mesh_from_config_values():
    mesh = mesh_from_config({"data": -1, "fsdp": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2}
    assert mesh.axis_names == ("data", "fsdp")

    class ConfigDict:  # as ml_collections.ConfigDict, which is no dependency here
        def to_dict(self):
            return {"data": -1, "fsdp": 1, "model": 1}

    cfg = ConfigDict()
    assert dict(mesh_from_config(cfg).shape) == {"data": 4, "fsdp": 1, "model": 1}
    with pytest.raises(MeshShapeError, match="4 devices"):
        mesh_from_config({"data": 3, "fsdp": 1})
    with pytest.raises(MeshShapeError, match="must map axis names"):
        mesh_from_config([("data", -1)])


def test_rules_from_config_values_shard_parameters():
    rules = rules_from_config([("kernel$", (None, "fsdp")), ["bias$", [("data", "fsdp")]]])
    assert rules == [("kernel$", P(None, "fsdp")), ("bias$", P(("data", "fsdp")))]
    mesh = mesh_from_config({"data": 2, "fsdp": 2})
    params = {"dense": {"kernel": jax.ShapeDtypeStruct((8, 4), "float32")}}
    assert shardings_for(params, rules, mesh)["dense"]["kernel"].spec == P(None, "fsdp")
    with pytest.raises(ShardingRuleError, match=r"rule #0 must be a \(regex, partition spec\)"):
        rules_from_config([("kernel$",)])
    with pytest.raises(ShardingRuleError, match="spec entry must be a mesh axis"):
        rules_from_config([("kernel$", (3,))])


def _launch(mode: str, *extra_env: str) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "synthaug.tpu_launch.cli", "local", "-n", "2", "-k", "1"]
    for item in extra_env:
        cmd += ["--env", item]
    cmd += ["--timeout", "150", "--", sys.executable, JOB, mode]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def test_a_process_that_raises_after_a_collective_stops_the_job_fast():
    rc, out, elapsed = _launch("raise")
    assert elapsed < 60, out
    assert rc == 1, out
    assert "[synthaug-launch] process 1 failed first: exit code 1" in out
    assert "RuntimeError: a bad batch in process 1" in out
    assert "[p1] [synthaug] process 1 of 2 failed (RuntimeError: a bad batch" in out
    assert "unreachable" not in out


def test_an_error_exit_code_in_a_multiprocess_job_leaves_at_once():
    rc, out, elapsed = _launch("exit")
    assert elapsed < 60, out
    assert rc == 2, out
    assert "[synthaug-launch] process 1 failed first: exit code 2" in out
    assert "[p1] [synthaug] process 1 of 2 failed (exit code 2)" in out


def test_a_killed_process_is_named_by_the_launcher():
    rc, out, elapsed = _launch("kill")
    assert elapsed < 60, out
    assert rc == 128 + signal.SIGKILL, out
    assert "[synthaug-launch] process 1 failed first: killed by SIGKILL (exit code 137)" in out


def _by_hand(mode: str) -> tuple[subprocess.Popen, str, float]:
    """Two processes started by hand (as on two hosts, no launcher to stop them)."""
    env = dict(os.environ)
    env.update(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}",
        JAX_NUM_PROCESSES="2",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        SYNTHAUG_HEARTBEAT_TIMEOUT="5",
    )
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, JOB, mode],
            env={**env, "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        out0, _ = procs[0].communicate(timeout=90)
        procs[1].communicate(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return procs, out0, time.monotonic() - start


def test_without_a_launcher_the_survivor_names_the_process_that_raised():
    procs, out0, elapsed = _by_hand("raise")
    assert procs[1].returncode == 1
    assert procs[0].returncode == 1, out0
    assert elapsed < 60, out0
    # Process 0's collective fails once process 1 is gone; it names process 1.
    assert "[synthaug] process 0 of 2 stops: process 1 failed first (RuntimeError: a bad" in out0
    assert "unreachable" not in out0


def test_without_a_launcher_the_heartbeats_stop_the_survivor():
    # Process 1 is SIGKILLed while process 0 computes without collectives: the coordination
    # service misses process 1's heartbeats and stops process 0 with an error naming task 1.
    procs, out0, elapsed = _by_hand("kill-sleep")
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode != 0, out0
    assert elapsed < 60, out0
    assert "stopped sending heartbeats" in out0 and "\n1\n" in out0, out0
    assert "unreachable" not in out0
