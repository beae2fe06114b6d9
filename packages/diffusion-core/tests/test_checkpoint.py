import logging
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusion_core_testutil import resume_setup

from synthaug.diffusion_core import (
    NonFiniteLossError,
    get_preset,
    load_params,
    state_from_params,
    train,
)
from synthaug.io.checkpoint import Checkpointer, CheckpointError

HERE = os.path.dirname(os.path.abspath(__file__))


def _assert_identical(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert bool(jnp.array_equal(np.asarray(x), np.asarray(y)))


def test_load_params_reads_the_newest_step(tmp_path):
    cfg = get_preset("tiny_base")
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    state = state_from_params(params, cfg)
    with Checkpointer(tmp_path, save_every=2, keep=2) as ckpt:
        for step in range(1, 11):
            s = state.replace(step=jnp.asarray(step, jnp.int32), params={"w": params["w"] * step})
            ckpt.save(step, s)
    np.testing.assert_array_equal(load_params(tmp_path, which="params")["w"], params["w"] * 10)
    np.testing.assert_array_equal(
        load_params(tmp_path, step=8, which="params")["w"], params["w"] * 8
    )
    np.testing.assert_array_equal(load_params(tmp_path)["w"], params["w"])  # the EMA
    with pytest.raises(KeyError, match="nope"):
        load_params(tmp_path, which="nope")
    with pytest.raises(FileNotFoundError, match="step 4"):
        load_params(tmp_path, step=4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "missing")


def test_resume_passes_over_a_truncated_latest_step(tmp_path, caplog):
    model, config, data = resume_setup()
    kw = dict(num_steps=4, checkpoint_dir=str(tmp_path), save_every=2, keep=3, log_every=1)
    straight, _ = train(model, config, data, **kw)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [2, 4]
    files = [os.path.join(r, n) for r, _, ns in os.walk(tmp_path / "4") for n in ns]
    biggest = max(files, key=os.path.getsize)
    os.truncate(biggest, os.path.getsize(biggest) // 2)
    with caplog.at_level(logging.WARNING):
        resumed, history = train(model, config, data, **kw)
    assert any("step 4 is damaged" in r.getMessage() for r in caplog.records)
    assert [h["step"] for h in history] == [3, 4]  # from step 2, not from 0
    _assert_identical(resumed, straight)
    # Every step damaged: one line, no traceback from TensorStore, nothing restored.
    for step in ("2", "4"):
        for root, _, names in os.walk(tmp_path / step):
            for name in names:
                open(os.path.join(root, name), "w").close()
    with pytest.raises(CheckpointError, match="no complete checkpoint") as info:
        train(model, config, data, **kw)
    assert "\n" not in str(info.value)


def test_resume_asks_a_callable_input_for_no_batch_before_the_restored_step(tmp_path):
    """A resumed run's first request is the restored step's batch (the shape example), so an
    input that positions itself reads none of the batches trained on before."""
    model, config, data = resume_setup()
    kw = dict(num_steps=6, checkpoint_dir=str(tmp_path), save_every=2, keep=3, log_every=1)
    straight, _ = train(model, config, data, num_steps=6, log_every=1)
    train(model, config, data, **{**kw, "num_steps": 4})
    asked = []

    def recorded(step):
        asked.append(int(step))
        return data(step)

    resumed, history = train(model, config, recorded, **kw)
    assert asked[0] == 4 and min(asked) == 4 and sorted(set(asked)) == [4, 5]
    assert [h["step"] for h in history] == [5, 6]
    _assert_identical(resumed, straight)


def test_sigkill_and_resume_is_bit_identical(tmp_path):
    model, config, data = resume_setup()
    # 10 steps in a real process, killed with SIGKILL once checkpoint 10 is on disk. It
    # runs while this process trains the same model 20 steps straight.
    ckpt_dir = str(tmp_path / "ckpt")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "resume_child.py"), ckpt_dir, "20", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # 20 steps straight, while the child trains and gets killed.
        straight, _ = train(model, config, data, num_steps=20)
        assert int(straight.step) == 20
        line = proc.stdout.readline()
        assert line.strip() == "READY 10", line
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Resume to 20 from the checkpoint directory.
    resumed, history = train(
        model,
        config,
        data,
        num_steps=20,
        checkpoint_dir=ckpt_dir,
        save_every=5,
        keep=2,
        log_every=1,
    )
    assert [h["step"] for h in history] == list(range(11, 21))
    _assert_identical(resumed.params, straight.params)
    _assert_identical(resumed.ema_params, straight.ema_params)
    _assert_identical(resumed.opt_state, straight.opt_state)
    assert int(resumed.step) == 20
    with Checkpointer(ckpt_dir, save_every=5, keep=2) as ckpt:
        assert ckpt.all_steps() == [15, 20]


def test_nan_stops_training_before_checkpoint(tmp_path):
    model, config, data = resume_setup()

    def bad_data(step):
        b = data(step)
        if step == 3:
            b = dict(b, image=b["image"] * jnp.nan)
        return b

    seen = []
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train(
            model,
            config,
            bad_data,
            num_steps=6,
            checkpoint_dir=str(tmp_path),
            save_every=1,
            keep=10,
            log_every=1,
            callback=lambda step, m, s: seen.append(step),
        )
    assert seen == [1, 2, 3]
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1, 2, 3]


def test_nan_between_log_steps_is_caught_before_the_next_save(tmp_path):
    # Finiteness is fetched only on log and save steps: a NaN at step 3 is reported at the
    # save of step 4 (log steps every 100), naming step 3; checkpoint 4 is never written.
    model, config, data = resume_setup()

    def bad_data(step):
        b = data(step)
        return dict(b, image=b["image"] * jnp.nan) if step == 3 else b

    with pytest.raises(NonFiniteLossError, match="step 3"):
        train(
            model,
            config,
            bad_data,
            num_steps=8,
            checkpoint_dir=str(tmp_path),
            save_every=2,
            keep=10,
            log_every=100,
        )
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [2]
