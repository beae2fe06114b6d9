"""A finetune run on streamed ImageNet-layout data, SIGKILLed and resumed, equals an
uninterrupted run bit for bit, and the resumed run restores its input position instead of
reading the batches it had trained on."""

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


def _params(work):
    from synthaug import diffusion_core as dc

    out = {}
    for which in ("params", "ema_params"):
        tree = dc.load_params(work / "checkpoints", step=STEPS, which=which)
        out[which] = {"/".join(map(str, k)): np.asarray(v) for k, v in _flatten(tree)}
    return out


def _flatten(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flatten(v, (*prefix, k))
    else:
        yield prefix, tree


def test_finetune_resumes_without_replaying_its_input(cli, tmp_path):
    root = _folder(tmp_path / "imagenet")
    ref, work = tmp_path / "uninterrupted", tmp_path / "killed"
    done = cli.run(*_args(root, ref))
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((ref / "metrics.json").read_text())["finetune"]["input"]
    assert first == {"resumed_from": None, "replayed_batches": 0, "batches_read": STEPS}

    proc = cli.popen(*_args(root, work))
    ckpts = work / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(
            p.name.isdigit() and int(p.name) >= 2 * SAVE_EVERY for p in ckpts.iterdir()
        ):
            break
        time.sleep(0.005)
    assert proc.poll() is None, (
        f"finetune ended before it could be killed: {proc.stderr.read()[-3000:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    kept = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert kept and kept[-1] < STEPS

    again = cli.run(*_args(root, work))
    assert again.returncode == 0, again.stderr[-3000:]
    info = json.loads((work / "metrics.json").read_text())["finetune"]["input"]
    k = info["resumed_from"]
    assert k is not None and k >= SAVE_EVERY and k % SAVE_EVERY == 0
    assert info["replayed_batches"] == 0  # the first k batches were not read again
    assert info["batches_read"] == STEPS - k + 1  # the rest, and batch 0 for the shapes

    a, b = _params(ref), _params(work)
    for which in a:
        assert a[which].keys() == b[which].keys()
        for name in a[which]:
            np.testing.assert_array_equal(a[which][name], b[which][name], err_msg=f"{which}/{name}")


def _classifier_args(root, work):
    return [
        "train-classifier",
        "--config",
        "paper/resnet50:real",
        "--config.recipe.model=resnet_tiny",
        "--config.recipe.image_size=16",
        "--config.recipe.num_classes=3",
        "--config.recipe.epochs=8",
        "--config.recipe.batch_size=4",  # 18 images: 4 steps an epoch, 32 steps
        "--config.recipe.eval_batch_size=4",
        "--config.recipe.warmup_epochs=0",
        "--config.recipe.checkpoint_every_steps=3",  # mid-epoch checkpoints
        "--config.recipe.eval_every_epochs=100",
        "--config.data.real.source=imagenet_folder",
        f"--config.data.real.data_dir={root}",
        "--config.data.eval_split=train",
        f"--config.workdir={work}",
    ]


def test_train_classifier_resumes_without_replaying_its_input(cli, tmp_path):
    from synthaug.pipeline.classify import load_classifier

    root = _folder(tmp_path / "imagenet")
    ref, work = tmp_path / "uninterrupted", tmp_path / "killed"
    done = cli.run(*_classifier_args(root, ref))
    assert done.returncode == 0, done.stderr[-3000:]

    proc = cli.popen(*_classifier_args(root, work))
    ckpts = work / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
        if any(s >= 9 and s % 4 for s in steps):  # a checkpoint in the middle of an epoch
            break
        time.sleep(0.005)
    assert proc.poll() is None, (
        f"training ended before it could be killed: {proc.stderr.read()[-3000:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    latest = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert 9 <= latest < 32

    again = cli.run(*_classifier_args(root, work))
    assert again.returncode == 0, again.stderr[-3000:]
    info = json.loads((work / "metrics.json").read_text())["train_classifier"]["input"]
    # Mid-epoch, the saved input state is restored; at an epoch's start the epoch's own
    # pipeline starts afresh. Either way no batch before the checkpoint is read again.
    assert info["resumed_from"] == (latest if latest % 4 else None)
    assert info["replayed_batches"] == 0
    assert info["batches_read"] == 32 - latest

    _, a = load_classifier(ref)
    _, b = load_classifier(work)
    assert int(a.step) == int(b.step) == 32
    for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
