"""Checkpoints: resume after SIGKILL is bit-identical, a diverging run keeps its last good
checkpoint, a saved classifier loads back."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from synthaug.classifiers import (
    CONFIG_FILE,
    NonFiniteLossError,
    create_train_state,
    evaluate,
    fit,
    load_classifier,
    model_from_config,
    save_classifier,
)
from synthaug.io.checkpoint import Checkpointer

from ._tiny import micro_config, toy_data

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
        if line.strip() == "step 11":  # saves started at steps 2, 4, ..., 10 (asynchronous)
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=120)
    assert victim.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert not (tmp_path / "never.npz").exists()
    steps = Checkpointer(tmp_path / "ckpt").all_steps()
    assert steps and max(steps) in (8, 10, 12)  # the save of step 10 may be unfinished
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


def test_diverging_learning_rate_raises_and_keeps_the_last_finite_checkpoint(tmp_path):
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
    template = jax.eval_shape(
        lambda: create_train_state(model_from_config(cfg), cfg, jax.random.key(0))
    )
    state = ck.restore(target=template)
    ck.close()
    assert int(state.step) == err.value.last_saved
    for leaf in jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state)):
        assert np.isfinite(np.asarray(leaf)).all()


def test_saved_classifier_loads_back_and_bad_directories_are_named(tmp_path):
    cfg = micro_config(epochs=1)
    images, labels = toy_data(64)
    state, _ = fit(
        cfg, images, labels, rng=jax.random.key(0), checkpoint_dir=tmp_path / "a" / "checkpoints"
    )
    cfg.train_examples = 64
    save_classifier(tmp_path / "a", cfg, state)  # the fit's last step is already saved
    save_classifier(tmp_path / "b", cfg, state)  # a fresh directory: saved now
    for d in ("a", "b"):
        loaded_cfg, loaded = load_classifier(tmp_path / d)
        assert json.loads(loaded_cfg.to_json()) == json.loads(cfg.to_json())
        for a, b in zip(
            jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(loaded), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert Checkpointer(tmp_path / "a" / "checkpoints").all_steps() == [8]
    ev = evaluate(loaded_cfg, loaded, images[:20], labels[:20])
    assert ev == evaluate(cfg, state, images[:20], labels[:20])
    with pytest.raises(FileNotFoundError, match=f"has no {CONFIG_FILE}"):
        load_classifier(tmp_path / "missing")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / CONFIG_FILE).write_text(cfg.to_json())
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_classifier(tmp_path / "c")
    (tmp_path / "c" / CONFIG_FILE).write_text('{"model": "resnet_tiny", "not_a_key": 1}')
    with pytest.raises(ValueError, match=r"not a classifier recipe \(unknown keys \['not_a_key'\]"):
        load_classifier(tmp_path / "c")
