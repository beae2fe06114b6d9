"""A finetune run on streamed ImageNet-layout data, SIGKILLed and resumed, restores its input
position from the saved iterator state of its latest checkpoint instead of reading the batches
it had trained on, and ends where an uninterrupted run ends: the same loss at every step after
the resume and the same EMA parameters, bit for bit."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data

STEPS, SAVE_EVERY, STEPS_PER_EPOCH = 16, 4, 3  # 18 images, batches of 5


class _Cli:
    """``synthaug`` subprocesses sharing JAX's persistent compilation cache: the killed and
    the resumed run reuse what the uninterrupted one compiled."""

    def __init__(self, cache):
        exe = shutil.which("synthaug", path=os.path.dirname(sys.executable))
        self.cmd = [exe] if exe else [sys.executable, "-m", "synthaug.pipeline.cli"]
        self.env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONHASHSEED": "0",
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }

    def run(self, *args):
        return subprocess.run(
            [*self.cmd, *args], env=self.env, capture_output=True, text=True, timeout=900
        )

    def popen(self, *args):
        return subprocess.Popen(
            [*self.cmd, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture()
def cli(tmp_path):
    return _Cli(tmp_path / "jax_cache")


def _folder(root):
    for label in range(3):
        d = root / "train" / data.label_to_wnid(label)
        d.mkdir(parents=True)
        rng = np.random.default_rng(label)
        for i in range(6):
            img = np.clip(rng.normal(60 + 70 * label, 30, (24, 20, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            (d / f"{label}_{i}.png").write_bytes(buf.getvalue())
    return root


def _args(root, work):
    return [
        "finetune",
        "--config",
        "demo/finetune:base",
        "--config.data.source=imagenet_folder",
        f"--config.data.data_dir={root}",
        "--config.data.split=train",
        f"--config.text.cache={root.parent / 'text_cache'}",
        f"--config.train.num_steps={STEPS}",
        f"--config.train.save_every={SAVE_EVERY}",
        "--config.train.keep=2",
        "--config.train.batch_size=5",  # 18 images: 3 batches an epoch, 5 epochs and a step
        "--config.train.log_every=1",
        # a one-level network without attention: compiles in a fraction of the demo's time
        "--config.model.model_channels=8",
        "--config.model.channel_mult=(1,)",
        "--config.model.attention_resolutions=()",
        "--config.model.cross_attention_resolutions=()",
        f"--config.workdir={work}",
    ]


def _losses(workdir) -> dict[int, float]:
    """``train/loss`` by step from the TensorBoard events of every run in ``workdir``."""
    import tensorflow as tf

    out = {}
    for f in sorted((workdir / "tb").glob("events.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                for v in event.summary.value:
                    if v.tag == "train/loss":
                        out[int(event.step)] = v.simple_value
        except tf.errors.DataLossError:  # the tail of a killed run's file
            pass
    return out


def test_finetune_resumes_without_replaying_its_input(cli, tmp_path):
    from synthaug import diffusion_core as dc

    root = _folder(tmp_path / "imagenet")
    straight = tmp_path / "straight"
    done = cli.run(*_args(root, straight))
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp_path / "killed"
    proc = cli.popen(*_args(root, work))
    ckpts = work / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
        if any(s >= 2 * SAVE_EVERY for s in steps):
            break
        time.sleep(0.005)
    assert proc.poll() is None, (
        f"finetune ended before it could be killed: {proc.stderr.read()[-3000:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    kept = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert kept and kept[-1] < STEPS
    states = work / "input_state" / "process-00000-of-00001"
    assert {f"step-{k}" for k in kept} <= {p.name for p in states.iterdir()}

    again = cli.run(*_args(root, work))
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((work / "metrics.json").read_text())["finetune"]
    info = summary["input"]
    k = kept[-1]
    assert k == kept[-1]  # the model's latest checkpoint
    # mid-epoch the input is restored from its saved state; an epoch starts a new pipeline
    assert info["resumed_from"] == (None if k % STEPS_PER_EPOCH == 0 else k)
    assert info["replayed_batches"] == 0  # the first k batches were not read again
    assert info["batches_read"] == STEPS - k  # only those of steps k .. STEPS - 1
    assert summary["steps"] == STEPS
    # the run ends as the uninterrupted one: each step's loss, and the EMA parameters
    want, got = _losses(straight), _losses(work)
    assert sorted(want) == list(range(1, STEPS + 1))
    assert [got[s] for s in range(k + 1, STEPS + 1)] == [want[s] for s in range(k + 1, STEPS + 1)]
    assert len({want[s] for s in want}) > STEPS // 2  # the steps do differ
    ema_want = dc.load_params(straight / "checkpoints")
    ema_got = dc.load_params(work / "checkpoints")
    leaves_want, tree_want = jax.tree.flatten(ema_want)
    leaves_got, tree_got = jax.tree.flatten(ema_got)
    assert tree_got == tree_want
    for a, b in zip(leaves_got, leaves_want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    straight_info = json.loads((straight / "metrics.json").read_text())["finetune"]["input"]
    assert straight_info == {"resumed_from": None, "replayed_batches": 0, "batches_read": STEPS}
