import argparse

import jax
import pytest

from synthaug.tpu_launch import (
    DistributedSettingsError,
    add_distributed_flags,
    detect_settings,
    distributed,
    initialize,
    is_initialized,
    process_count,
    process_index,
    tpu_vm_detected,
)

EXPLICIT_ENV = {
    "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    "JAX_NUM_PROCESSES": "4",
    "JAX_PROCESS_ID": "2",
}


def test_no_settings_is_a_single_process():
    s = detect_settings(environ={})
    assert s.mode == "single"
    assert s.coordinator_address is None


def test_explicit_settings_from_environment():
    s = detect_settings(environ=EXPLICIT_ENV)
    assert (s.mode, s.coordinator_address, s.num_processes, s.process_id) == (
        "explicit",
        "10.0.0.1:1234",
        4,
        2,
    )


def test_explicit_settings_from_arguments_and_agreeing_environment():
    s = detect_settings("10.0.0.1:1234", 4, 2, environ=EXPLICIT_ENV)
    assert (s.num_processes, s.process_id) == (4, 2)
    s = detect_settings("host-a:99", 2, 1, environ={})
    assert (s.mode, s.coordinator_address, s.num_processes, s.process_id) == (
        "explicit",
        "host-a:99",
        2,
        1,
    )


def test_arguments_contradicting_environment_are_an_error():
    with pytest.raises(DistributedSettingsError, match=r"process_id=3.*JAX_PROCESS_ID=2"):
        detect_settings(process_id=3, environ=EXPLICIT_ENV)
    with pytest.raises(DistributedSettingsError, match="JAX_COORDINATOR_ADDRESS"):
        detect_settings(coordinator_address="other:1", environ=EXPLICIT_ENV)


def test_partial_settings_name_what_is_missing():
    with pytest.raises(DistributedSettingsError, match=r"process_id.*not.*num_processes") as e:
        detect_settings(process_id=0, coordinator_address="h:1", environ={})
    assert "JAX_NUM_PROCESSES" in str(e.value)
    with pytest.raises(DistributedSettingsError, match="incomplete"):
        detect_settings(environ={"JAX_NUM_PROCESSES": "2"})


def test_bad_values_are_errors():
    with pytest.raises(
        DistributedSettingsError, match=r"process_id must be in \[0, num_processes=2\)"
    ):
        detect_settings("h:1", 2, 2, environ={})
    with pytest.raises(DistributedSettingsError, match="num_processes must be >= 1"):
        detect_settings("h:1", 0, 0, environ={})
    with pytest.raises(DistributedSettingsError, match="host:port"):
        detect_settings("no-port", 2, 0, environ={})
    with pytest.raises(DistributedSettingsError, match="JAX_NUM_PROCESSES must be an integer"):
        detect_settings(environ={**EXPLICIT_ENV, "JAX_NUM_PROCESSES": "four"})
    with pytest.raises(DistributedSettingsError, match="cluster must be one of"):
        detect_settings(cluster="pbs", environ={})


def test_tpu_vm_detection_from_environment():
    env = {"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1", "TPU_WORKER_ID": "1"}
    assert tpu_vm_detected(env)
    assert not tpu_vm_detected({})
    assert detect_settings(environ=env).mode == "tpu"
    # Explicit settings win over detection; forcing single contradicts them.
    assert detect_settings(environ={**env, **EXPLICIT_ENV}).mode == "explicit"
    assert detect_settings(cluster="tpu", environ={}).mode == "tpu"
    with pytest.raises(DistributedSettingsError, match="cluster='single'"):
        detect_settings(cluster="single", environ=EXPLICIT_ENV)
    with pytest.raises(DistributedSettingsError, match="cluster='tpu' with partial"):
        detect_settings(process_id=1, cluster="tpu", environ={})
    with pytest.raises(DistributedSettingsError, match="incomplete"):
        detect_settings(cluster="explicit", environ={})


def test_initialize_single_process_is_idempotent():
    first = initialize(environ={})
    assert is_initialized()
    assert (first.mode, first.num_processes, first.process_id) == ("single", 1, 0)
    assert initialize(environ={}) is first
    assert initialize() is first  # the test environment has no multi-process settings
    assert (process_index(), process_count()) == (0, 1)
    with pytest.raises(DistributedSettingsError, match="already called with mode 'single'"):
        initialize("127.0.0.1:1", 2, 0, environ={})


def test_initialize_after_jax_started_is_a_clear_error(monkeypatch):
    jax.devices()  # JAX's backends are up in this process
    monkeypatch.setattr(distributed, "_active", None)  # as in a process that never called it
    with pytest.raises(DistributedSettingsError, match="must come before any JAX computation"):
        initialize("127.0.0.1:1", 2, 0, environ={})
    assert distributed._active is None
    assert jax.process_count() == 1


def test_distributed_flags_parse_into_settings():
    parser = add_distributed_flags(argparse.ArgumentParser())
    args = parser.parse_args(["--coordinator-address", "h:5", "--num-processes", "2"])
    assert (args.coordinator_address, args.num_processes, args.process_id) == ("h:5", 2, None)
    s = detect_settings(
        args.coordinator_address,
        args.num_processes,
        args.process_id,
        cluster=args.cluster,
        environ={"JAX_PROCESS_ID": "1"},
    )
    assert (s.mode, s.num_processes, s.process_id) == ("explicit", 2, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["--cluster", "nope"])
