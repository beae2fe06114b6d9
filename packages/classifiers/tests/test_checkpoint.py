"""Resume after SIGKILL: a real subprocess is killed mid-training and resumed; the final
state is bit-identical to an uninterrupted run."""

import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from synthaug.classifiers import Checkpointer, TrainState

CHILD = pathlib.Path(__file__).parent / "_resume_child.py"


def _env(cache):
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _start(ckpt, out, sleep, env):
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(ckpt), str(out), str(sleep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path):
    env = _env(tmp_path / "jax_cache")
    ref = _start(tmp_path / "ref_ckpt", tmp_path / "ref.npz", 0.0, env)
    victim = _start(tmp_path / "ckpt", tmp_path / "never.npz", 0.3, env)
    seen = []
    for line in victim.stdout:
        seen.append(line)
        if line.strip() == "step 11":  # checkpoints exist at steps 2, 4, ..., 10
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=120)
    assert victim.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert not (tmp_path / "never.npz").exists()
    steps = Checkpointer(tmp_path / "ckpt").all_steps()
    assert steps and max(steps) in (10, 12) and max(steps) < 24
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]

    resumed = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "ckpt"), str(tmp_path / "res.npz"), "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    first = int(resumed.stdout.split()[1])
    assert first == max(steps) + 1  # it continued from the checkpoint, not from scratch
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "res.npz")
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 10
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert int(b[".step"]) == 24


def test_checkpointer_roundtrip_and_missing(tmp_path):
    state = TrainState(
        step=np.asarray(0, np.int32),
        params={"conv": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4)}},
        batch_stats={"bn": {"mean": np.ones(4, np.float32)}},
        opt_state=(np.zeros(3, np.float32),),
        rng=np.array([0, 3], np.uint32),
    )
    with Checkpointer(tmp_path / "c", max_to_keep=1) as ck:
        assert ck.latest_step() is None
        with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
            ck.restore(state)
        ck.save(5, state, {"history": [{"epoch": 1}]})
        ck.save(7, state.replace(step=np.asarray(7, np.int32)), {"history": []})
        assert ck.all_steps() == [7]
        restored, meta = ck.restore(state)
    assert int(restored.step) == 7 and meta == {"history": []}
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored.params, state.params)
    assert type(restored) is type(state)


def test_diverging_learning_rate_raises_and_keeps_the_last_finite_checkpoint(tmp_path):
    from synthaug.classifiers import (
        NonFiniteLossError,
        create_train_state,
        fit,
        model_from_config,
    )

    from ._tiny import micro_config, toy_data

    images, labels = toy_data(64)
    cfg = micro_config(epochs=3, checkpoint_every_steps=2, base_lr=1e5, warmup_epochs=0.0)
    with pytest.raises(NonFiniteLossError, match=r"diverged at step (\d+): loss=nan") as err:
        fit(cfg, images, labels, rng=jax.random.key(0), checkpoint_dir=tmp_path / "ckpt")
    bad = err.value.step
    assert 2 <= bad < 24 and err.value.last_saved == bad // 2 * 2
    assert f"the checkpoints keep step {err.value.last_saved}" in str(err.value)
    ck = Checkpointer(tmp_path / "ckpt")
    # No checkpoint at or after the diverged step; the newest one is finite.
    assert ck.all_steps() and max(ck.all_steps()) == err.value.last_saved <= bad
    cfg.train_examples = 64
    template = create_train_state(model_from_config(cfg), cfg, jax.random.key(0))
    state, _ = ck.restore(template)
    ck.close()
    assert int(state.step) == err.value.last_saved
    for leaf in jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state)):
        assert np.isfinite(np.asarray(leaf)).all()
