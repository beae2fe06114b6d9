"""The orbax checkpoint wrapper: cadence, keep, metadata, sharded restore, fallback."""

import logging
import os
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.io.checkpoint import Checkpointer, CheckpointError


class State(typing.NamedTuple):
    step: jax.Array
    params: dict


def _state(step: int) -> State:
    w = np.arange(64, dtype=np.float32).reshape(8, 8) * step
    return State(step=jnp.asarray(step, jnp.int32), params={"w": jnp.asarray(w), "b": jnp.ones(4)})


def _files(step_dir):
    out = []
    for root, _, names in os.walk(step_dir):
        out += [os.path.join(root, n) for n in names if n != "synthaug_files.json"]
    return out


def _largest_file(step_dir):
    return max(_files(step_dir), key=os.path.getsize)


def test_cadence_keep_metadata_and_restore(tmp_path):
    with Checkpointer(tmp_path, keep=2, save_every=2) as ck:
        assert ck.latest_step() is None
        with pytest.raises(CheckpointError, match="no checkpoint in"):
            ck.restore(target=_state(0))
        saved = [s for s in range(1, 11) if ck.save(s, _state(s), metadata={"s": s})]
        assert saved == [2, 4, 6, 8, 10]
        assert ck.save(11, _state(11), force=True)
    with Checkpointer(tmp_path, keep=2, save_every=2) as ck:
        assert ck.all_steps() == [10, 11] and ck.latest_step() == 11
        out = ck.restore(target=_state(0))
        assert type(out) is State and int(out.step) == 11 and ck.restored_step == 11
        np.testing.assert_array_equal(out.params["w"], _state(11).params["w"])
        assert ck.metadata() == {} and ck.metadata(10) == {"s": 10}
        plain = ck.restore(10)  # no target: nested dicts, as saved
        np.testing.assert_array_equal(plain["params"]["w"], _state(10).params["w"])
        with pytest.raises(CheckpointError, match=r"no checkpoint for step 4 .*\[10, 11\]"):
            ck.restore(4, target=_state(0))
    with pytest.raises(ValueError, match="keep must be >= 1"):
        Checkpointer(tmp_path, keep=0)


def test_restore_into_a_sharded_target(tmp_path):
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "fsdp"))
    state = _state(3)
    saved = State(
        step=state.step, params=jax.device_put(state.params, NamedSharding(mesh, P("data")))
    )
    with Checkpointer(tmp_path, async_save=False) as ck:
        ck.save(3, saved)
    spec = {"w": P(None, ("data", "fsdp")), "b": P()}
    target = State(
        step=jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, P())),
        params={
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, spec[k]))
            for k, v in saved.params.items()
        },
    )
    with Checkpointer(tmp_path) as ck:
        out = ck.restore(target=target)
    assert out.params["w"].sharding == NamedSharding(mesh, spec["w"])
    assert out.params["w"].addressable_shards[0].data.shape == (8, 2)
    np.testing.assert_array_equal(out.params["w"], _state(3).params["w"])


_RESTORE_IN_ONE_DEVICE = """
import sys
import jax, jax.numpy as jnp, numpy as np
from synthaug.io.checkpoint import Checkpointer
assert jax.device_count() == 1
f32 = jnp.float32
target = {"step": jax.ShapeDtypeStruct((), jnp.int32),
          "params": {"w": jax.ShapeDtypeStruct((8, 8), f32), "b": jax.ShapeDtypeStruct((4,), f32)}}
with Checkpointer(sys.argv[1]) as ck:
    out = ck.restore(target=target)
np.savez(sys.argv[2], step=np.asarray(out["step"]), w=np.asarray(out["params"]["w"]))
"""


def test_an_unsharded_target_restores_what_other_devices_saved(tmp_path):
    """Saved sharded over 4 devices, restored in a 1-device process into shapes from
    ``jax.eval_shape`` (no shardings): whole copies, not orbax's topology error."""
    import subprocess
    import sys

    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    state = _state(5)
    saved = {
        "step": state.step,
        "params": jax.device_put(state.params, NamedSharding(mesh, P("data"))),
    }
    with Checkpointer(tmp_path / "ck", async_save=False) as ck:
        ck.save(5, saved)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESTORE_IN_ONE_DEVICE,
            str(tmp_path / "ck"),
            str(tmp_path / "out.npz"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as out:
        assert int(out["step"]) == 5
        np.testing.assert_array_equal(out["w"], state.params["w"])


@pytest.mark.parametrize("damage", ["truncate", "empty", "no-record-truncate"])
def test_damaged_latest_step_falls_back_with_a_warning(tmp_path, caplog, damage):
    with Checkpointer(tmp_path, keep=5) as ck:
        for s in (1, 2, 3):
            ck.save(s, _state(s), metadata={"s": s})
    step_dir = tmp_path / "3"
    if damage == "empty":
        for f in _files(step_dir):
            open(f, "w").close()
    else:
        if damage == "no-record-truncate":  # detected only when TensorStore reads it
            (step_dir / "synthaug_files.json").unlink()
            for f in _files(step_dir / "state"):
                if os.sep + "d" + os.sep in f:
                    os.truncate(f, os.path.getsize(f) // 2)
        else:
            big = _largest_file(step_dir)
            os.truncate(big, os.path.getsize(big) // 2)
    with Checkpointer(tmp_path, keep=5) as ck, caplog.at_level(logging.WARNING):
        if damage != "no-record-truncate":
            assert ck.latest_step() == 2 and ck.check(3) is not None
        out = ck.restore(target=_state(0))
        assert ck.restored_step == 2 and int(out.step) == 2 and ck.metadata() == {"s": 2}
        np.testing.assert_array_equal(out.params["w"], _state(2).params["w"])
        assert any("step 3 is damaged" in r.getMessage() for r in caplog.records)
        with pytest.raises(CheckpointError, match="step 3"):
            ck.restore(3, target=_state(0))
        # Training on from step 2 saves step 3 again: the damaged one is replaced.
        ck.save(3, _state(3))
    with Checkpointer(tmp_path, keep=5) as ck:
        assert ck.check(3) is None and int(ck.restore(target=_state(0)).step) == 3


def test_no_complete_step_fails_in_one_line(tmp_path):
    with Checkpointer(tmp_path) as ck:
        ck.save(1, _state(1))
        ck.save(2, _state(2))
    for s in ("1", "2"):
        for f in _files(tmp_path / s):
            open(f, "w").close()
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() is None
        with pytest.raises(CheckpointError) as info:
            ck.restore(target=_state(0))
    msg = str(info.value)
    assert "\n" not in msg and "no complete checkpoint" in msg
    assert "step 2:" in msg and "step 1:" in msg and "0 bytes" in msg
