"""A finetune run on streamed ImageNet-layout data, SIGKILLed and resumed, restores its input
position from the saved iterator state of its latest checkpoint instead of reading the batches
it had trained on (that the restored stream yields the uninterrupted run's batches is
tests/test_resume.py in the pipeline package)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data

STEPS, SAVE_EVERY = 30, 3


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
        "--config.train.batch_size=4",  # 18 images: 4 batches an epoch, 7 epochs
        "--config.train.log_every=1",
        # a one-level network without attention: compiles in a fraction of the demo's time
        "--config.model.model_channels=8",
        "--config.model.channel_mult=(1,)",
        "--config.model.attention_resolutions=()",
        "--config.model.cross_attention_resolutions=()",
        f"--config.workdir={work}",
    ]


def test_finetune_resumes_without_replaying_its_input(cli, tmp_path):
    root = _folder(tmp_path / "imagenet")
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
    k = info["resumed_from"]
    assert k == kept[-1]  # restored at the model's latest checkpoint
    assert info["replayed_batches"] == 0  # the first k batches were not read again
    assert info["batches_read"] == STEPS - k + 1  # the rest, and batch 0 for the shapes
    assert summary["steps"] == STEPS
