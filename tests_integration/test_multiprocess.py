"""Stages as multi-process jobs: 2 processes x 2 CPU devices through ``synthaug-launch local``
give what 1 process x 4 devices and 1 process x 1 device give; a lost process ends the job.

Every run is a real ``synthaug`` command line in subprocesses (the launcher starts JAX's
distributed runtime in each process through ``JAX_COORDINATOR_ADDRESS`` & co.). Each stage
runs once per layout in a module fixture; the 1x1 sample set and classifier are what the
``evaluate`` runs measure.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from synthaug.pipeline.demo import FAST_COMPILE_FLAGS

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
# Every run of every layout compiles with the demo's quick-compile XLA flags (a third of the
# compile time of these tiny networks; the layouts are compared under the same flags).
FAST_XLA = " ".join(FAST_COMPILE_FLAGS)
LAYOUTS = ("1x1", "1x4", "2x2")
# The demo's base U-Net cut to one level, self- and cross-attention kept at its 16x16
# resolution: a process traces and compiles its train step in 60% of the two-level net's time.
ONE_LEVEL_UNET = [
    "model.channel_mult=(1,)",
    "model.attention_resolutions=(16,)",
    "model.cross_attention_resolutions=(16,)",
]


def synthaug_cmd() -> list[str]:
    exe = shutil.which("synthaug", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "synthaug.pipeline.cli"]


SAMPLE = [
    "sample",
    "--config",
    "demo/sample",
    "--config.sr1.enabled=false",
    "--config.per_class=2",  # two of each digit
    "--config.shard_size=4",
    "--config.batch_size=4",
    "--config.base.steps=3",
]


def _launcher() -> list[str]:
    exe = shutil.which("synthaug-launch", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "synthaug.tpu_launch.cli"]


def _run(layout: str, args: list[str], *, timeout: float = 900) -> subprocess.CompletedProcess:
    """``synthaug ARGS`` as 1x1, 1x4 (one process, four CPU devices) or 2x2 (launcher)."""
    env = {**ENV, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_XLA}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    if layout == "2x2":  # the launcher adds the device count to XLA_FLAGS
        cmd = [*_launcher(), "local", "-n", "2", "-k", "2", "--", *synthaug_cmd(), *args]
    else:
        cmd = [*synthaug_cmd(), *args]
        env["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={layout[-1]}"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{layout}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """A randomly initialised tiny base model saved as ``finetune`` saves one, and the
    prompt embedding cache (both made in a subprocess, as a user's earlier run would)."""
    root = tmp_path_factory.mktemp("mp")
    workdir, cache = root / "base", root / "text_cache.npz"
    code = f"""
import jax, numpy as np
from synthaug import diffusion_core as dc
from synthaug.io.checkpoint import Checkpointer
from synthaug.pipeline import config as C, models
from synthaug.pipeline.text import class_embeddings
cfg = C.load_config(
    "demo/finetune", "finetune", ["workdir={workdir}", "text.cache={cache}", *{ONE_LEVEL_UNET}]
)
emb, mask = class_embeddings(cfg.text, [str(i) for i in range(10)], workdir=cfg.workdir)
dcfg = models.diffusion_config(cfg)
model = dc.make_model(dcfg)
s = int(dcfg.model.image_size)
example = {{"image": np.zeros((1, s, s, 3), np.float32), "text_emb": emb[:1], "text_mask": mask[:1]}}
state = dc.create_train_state(jax.random.key(0), model, dcfg, example)
with Checkpointer("{workdir}/checkpoints") as ckpt:
    ckpt.save(1, state, force=True)
models.write_model_info("{workdir}", cfg.preset, dcfg)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**ENV, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_XLA},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, cache


def _images(out_dir: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    from synthaug import imagenet_data as data

    images, labels = [], []
    for d in data.synthetic_dirs(out_dir):
        for img, lab in data.iter_synthetic(d):
            images.append(img)
            labels.append(lab)
    return np.stack(images), np.asarray(labels)


@pytest.fixture(scope="module")
def sampled(base_checkpoint, tmp_path_factory) -> dict[str, pathlib.Path]:
    """``sample`` of two images per digit in each layout: ``{layout: out_dir}`` (the 1x1 set
    is also what ``evaluate`` measures below)."""
    workdir, cache = base_checkpoint
    root = tmp_path_factory.mktemp("sample")
    args = [*SAMPLE, f"--config.base.checkpoint={workdir}", f"--config.text.cache={cache}"]
    for layout in LAYOUTS:
        _run(layout, [*args, f"--config.out_dir={root / layout}"])
    return {layout: root / layout for layout in LAYOUTS}


def test_sample_2x2_equals_1x4_and_1x1(sampled):
    out = {layout: _images(d) for layout, d in sampled.items()}
    # Each process of the 2x2 run wrote its own disjoint part.
    hosts = sorted(p.name for p in sampled["2x2"].glob("host-*"))
    assert hosts == ["host-00000-of-00002", "host-00001-of-00002"]
    x1, y1 = out["1x1"]
    assert x1.shape == (20, 16, 16, 3) and sorted(y1.tolist()) == sorted(2 * list(range(10)))
    for layout in ("1x4", "2x2"):
        x, y = out[layout]
        np.testing.assert_array_equal(y, y1)
        np.testing.assert_array_equal(x, x1)  # bit-identical images, none missing or doubled
    assert len({img.tobytes() for img in x1}) == 20


def test_a_killed_process_ends_the_job_within_60_s_naming_it(base_checkpoint, tmp_path):
    """SIGKILL one process of a 2-process ``sample`` while it works: the launcher names it
    and the other process is stopped, well within 60 s."""
    workdir, cache = base_checkpoint
    args = [
        *SAMPLE,
        "--config.per_class=40",
        "--config.base.steps=50",
        f"--config.base.checkpoint={workdir}",
        f"--config.text.cache={cache}",
        f"--config.out_dir={tmp_path / 'out'}",
    ]
    env = {**ENV, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_XLA}
    cmd = [*_launcher(), "local", "-n", "2", "-k", "2", "--", *synthaug_cmd(), *args]
    launcher = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        # Wait until process 1 has written its first shard (it is past every collective).
        deadline = time.monotonic() + 300
        host1 = tmp_path / "out" / "host-00001-of-00002"
        while not list(host1.glob("*.tfrecord.json")):
            assert time.monotonic() < deadline, "process 1 wrote no shard"
            assert launcher.poll() is None, launcher.stdout.read()
            time.sleep(0.2)
        pids = _child_pids(launcher.pid)
        victim = next(p for p in pids if _env_of(p).get("JAX_PROCESS_ID") == "1")
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        out, _ = launcher.communicate(timeout=120)
        elapsed = time.monotonic() - killed_at
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    lines = out.splitlines()
    assert launcher.returncode == 128 + signal.SIGKILL, out[-3000:]
    assert elapsed < 60, out[-3000:]
    note = "[synthaug-launch] process 1 failed first: killed by SIGKILL (exit code 137)"
    assert any(line.startswith(note) for line in lines), out[-3000:]


def _child_pids(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(x) for x in out.split()]


def _env_of(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def _metrics(workdir: pathlib.Path) -> dict:
    import json

    return json.loads((workdir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory) -> dict[str, pathlib.Path]:
    """One epoch of ``train-classifier`` in each layout: ``{layout: workdir}`` (the 1x1
    classifier is also what ``evaluate`` measures below)."""
    root = tmp_path_factory.mktemp("classifier")
    args = [
        "train-classifier",
        "--config",
        "demo/classifier",
        "--config.recipe.epochs=1",
        "--config.recipe.batch_size=32",
        "--config.data.real.per_class=8",
    ]
    for layout in LAYOUTS:
        _run(layout, [*args, f"--config.workdir={root / layout}"])
    return {layout: root / layout for layout in LAYOUTS}


def _tb_scalars(workdir: pathlib.Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of a scalar in the run's TensorBoard event files."""
    import tensorflow as tf

    out = {}
    for path in sorted((workdir / "tb").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag == tag:
                    out[int(event.step)] = float(v.simple_value)
    return out


def test_train_classifier_2x2_equals_1x4_and_1x1(classifiers):
    """Two steps of the tiny ResNet: the same accuracy counts, loss and final parameters and
    BatchNorm statistics (each checkpoint read back in this one-device process)."""
    import jax

    from synthaug import classifiers as cl

    out = {layout: _metrics(d)["train_classifier"] for layout, d in classifiers.items()}
    states = {layout: cl.load_classifier(d)[1] for layout, d in classifiers.items()}
    ref, s1 = out["1x1"], states["1x1"]
    assert ref["eval_examples"] == 359  # the digits test split, every example once
    for layout in ("1x4", "2x2"):
        got, s = out[layout], states[layout]
        # Accuracy counts exactly; the loss to float32 round-off.
        assert round(got["top1"] * 359) == round(ref["top1"] * 359)
        assert round(got["top5"] * 359) == round(ref["top5"] * 359)
        assert got["eval_examples"] == ref["eval_examples"]
        np.testing.assert_allclose(got["final_train_loss"], ref["final_train_loss"], rtol=1e-5)
        assert int(s.step) == int(s1.step) == 2
        for name in ("params", "batch_stats"):
            a = [np.asarray(x) for x in jax.tree.leaves(getattr(s1, name))]
            b = [np.asarray(x) for x in jax.tree.leaves(getattr(s, name))]
            assert len(a) == len(b) > 0
            # To 1e-5 of the collection's largest entry: a bias still near its zero start
            # moved by a gradient that is a float32 sum over the batch (summed in another
            # order on 4 devices) can differ by 1e-3 of itself.
            scale = max(np.abs(x).max() for x in a)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * scale)


def test_finetune_2x2_equals_1x4_and_1x1(tmp_path):
    """Two steps of the tiny base U-Net, each in 2 micro-batches (the accumulation's split of
    a batch spread over devices and processes): the same losses and final EMA parameters."""
    args = [
        "finetune",
        "--config",
        "demo/finetune",
        "--config.model.model_channels=8",
        *(f"--config.{o}" for o in ONE_LEVEL_UNET),
        "--config.train.num_steps=2",
        "--config.train.save_every=2",
        "--config.train.log_every=1",
        "--config.train.batch_size=8",
        "--config.train.grad_accum_steps=2",
        f"--config.text.cache={tmp_path / 'text_cache.npz'}",
    ]
    for layout in LAYOUTS:
        _run(layout, [*args, f"--config.workdir={tmp_path / layout}"], timeout=900)
    import jax

    from synthaug import diffusion_core as dc

    m1 = _metrics(tmp_path / "1x1")["finetune"]
    loss1 = _tb_scalars(tmp_path / "1x1", "train/loss")
    e1 = jax.tree.leaves(dc.load_params(tmp_path / "1x1" / "checkpoints"))
    assert m1["steps"] == 2 and sorted(loss1) == [1, 2]
    for layout in ("1x4", "2x2"):
        m = _metrics(tmp_path / layout)["finetune"]
        assert m["steps"] == 2
        np.testing.assert_allclose(m["final_loss"], m1["final_loss"], rtol=1e-5)
        loss = _tb_scalars(tmp_path / layout, "train/loss")  # the loss of every step
        assert sorted(loss) == [1, 2]
        for step in loss1:
            np.testing.assert_allclose(loss[step], loss1[step], rtol=1e-5)
        e = jax.tree.leaves(dc.load_params(tmp_path / layout / "checkpoints"))
        assert len(e) == len(e1)
        for a, b in zip(e1, e, strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-8)


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """Random FID Inception weights (the metrics tests' generator) and reference statistics."""
    from synthaug import metrics as mt

    root = tmp_path_factory.mktemp("inception")
    weights, reference = root / "inception.npz", root / "reference.npz"
    np.savez(weights, **mt.random_state_dict(mt.fid_inception_torch_shapes(), seed=0))
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(64, 2048))
    np.savez(reference, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
    return weights, reference


@pytest.fixture(scope="module")
def evaluated(sampled, classifiers, inception, tmp_path_factory) -> tuple[dict, dict]:
    """``evaluate`` of the 1x1 sample set and the 2x2 classifier in each layout:
    ``({layout: metrics}, {layout: {"mu", "sigma"}})``."""
    weights, reference = inception
    tmp_path = tmp_path_factory.mktemp("evaluate")
    args = [
        "evaluate",
        "--config",
        "paper/evaluate:train64",
        "--config.metrics=fid,inception_score,accuracy",
        f"--config.samples_dir={sampled['1x1']}",
        f"--config.reference={reference}",
        f"--config.inception_checkpoint={weights}",
        f"--config.classifier_dir={classifiers['2x2']}",  # saved by 2 processes
        "--config.real.source=digits",
        "--config.real.split=test",
        "--config.batch_size=4",
    ]
    out, stats = {}, {}
    for layout in LAYOUTS:
        _run(layout, [*args, f"--config.workdir={tmp_path / layout}"])
        out[layout] = _metrics(tmp_path / layout)["evaluate"]
        with np.load(tmp_path / layout / "sample_stats.npz") as f:
            stats[layout] = {k: f[k] for k in ("mu", "sigma")}
    return out, stats


def test_evaluate_2x2_equals_1x4_and_1x1(evaluated, classifiers):
    """FID, IS and the accuracy of a classifier (trained as a 2x2 job) on the digits test
    split, in one run per layout: the accuracy counts exactly; the synthetic set's pool3
    statistics to float32 round-off against 1x1 (one device runs batches of 4 images, four
    devices one image each: the features differ in their last bits) and to float64
    round-off between 1x4 and 2x2 (the same per-device batches; only the cross-process
    reduction differs)."""
    out, stats = evaluated
    ref, s1 = out["1x1"], stats["1x1"]
    assert ref["eval_examples"] == 359 and ref["num_samples"] == 20
    assert s1["mu"].shape == (2048,) and s1["sigma"].shape == (2048, 2048)
    assert ref["inception_score"] > 1 + 1e-6  # two images per split: not the trivial 1
    # The classifier's own evaluation at the end of its training counted the same.
    trained = _metrics(classifiers["2x2"])["train_classifier"]
    assert round(ref["top1"] * 359) == round(trained["top1"] * 359)
    assert round(ref["top5"] * 359) == round(trained["top5"] * 359)
    for layout in ("1x4", "2x2"):
        got, s = out[layout], stats[layout]
        assert got["eval_examples"] == 359 and got["num_samples"] == 20
        assert round(got["top1"] * 359) == round(ref["top1"] * 359)
        assert round(got["top5"] * 359) == round(ref["top5"] * 359)
        for k in ("mu", "sigma"):  # float32 features: 1e-5 of the largest entry
            np.testing.assert_allclose(s[k], s1[k], rtol=0, atol=1e-5 * np.abs(s1[k]).max())
        np.testing.assert_allclose(got["fid"], ref["fid"], rtol=1e-6)
        np.testing.assert_allclose(got["inception_score"], ref["inception_score"], rtol=1e-6)
    for k in ("mu", "sigma"):  # the exact float64 reduction over processes
        np.testing.assert_allclose(stats["2x2"][k], stats["1x4"][k], rtol=1e-12, atol=1e-14)


def test_select_checkpoint_2x2_scores_as_sample_and_evaluate_do(
    base_checkpoint, inception, evaluated, tmp_path
):
    """``select-checkpoint`` as a 2x2 job: each process samples its part of the checkpoint's
    images and the features are computed over all four devices; its FID is the 1x1
    ``evaluate`` FID of the same 20 images drawn by a 1x1 ``sample`` (the settings of
    ``sampled``: batches start at the same indices, so they hold the same images)."""
    import json

    workdir, cache = base_checkpoint
    weights, reference = inception
    out = tmp_path / "selection.json"
    args = [
        "select-checkpoint", "--config", "demo/select_checkpoint",
        "--config.sr1.enabled=false", "--config.base.steps=3", "--config.batch_size=4",
        f"--config.base.checkpoint={workdir}", f"--config.text.cache={cache}",
        "--config.select.num_samples=20", "--config.select.fid_batch_size=8",
        f"--config.select.reference={reference}",
        f"--config.select.inception_checkpoint={weights}", f"--config.select.out={out}",
    ]  # fmt: skip
    _run("2x2", args)
    sel = json.loads(out.read_text())
    assert sel["complete"] and [r["step"] for r in sel["ranking"]] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selection.json"]  # scratch removed
    np.testing.assert_allclose(sel["best_fid"], evaluated[0]["1x1"]["fid"], rtol=1e-6)


def _folder_split(root: pathlib.Path) -> pathlib.Path:
    """An ImageNet-layout folder of 7 noisy colour classes: train 6, val 5 per class."""
    import io

    from PIL import Image

    from synthaug import imagenet_data as data

    for split, n in (("train", 6), ("val", 5)):
        for label in range(7):
            d = root / split / data.label_to_wnid(label)
            d.mkdir(parents=True)
            rng = np.random.default_rng([label, n])
            colour = np.array([label * 37 % 256, (label * 91 + 60) % 256, (label * 53 + 120) % 256])
            for i in range(n):
                img = np.clip(colour + rng.integers(-127, 127, (32, 40, 3)), 0, 255)
                buf = io.BytesIO()
                Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
                (d / f"{i}.png").write_bytes(buf.getvalue())
    return root


def test_evaluate_streams_a_real_split_over_2x2_as_training_counted_it(tmp_path):
    """``evaluate`` on an ImageNet-layout split streamed through tf.data, as a 2x2 job: each
    process reads its own part and evaluates it over its devices; the counts over all 35
    images equal the classifier's own one-process evaluation of that split after training."""
    from synthaug.pipeline import cli

    folder = _folder_split(tmp_path / "folder")
    work = tmp_path / "cls"
    train = [
        "train-classifier", "--config", "paper/resnet50:real",
        "--config.recipe.model=resnet_tiny", "--config.recipe.image_size=32",
        "--config.recipe.num_classes=7", "--config.recipe.epochs=1",
        "--config.recipe.batch_size=8", "--config.recipe.eval_batch_size=8",
        "--config.recipe.warmup_epochs=0", "--config.recipe.base_lr=0.1",
        "--config.data.real.source=imagenet_folder", f"--config.data.real.data_dir={folder}",
        "--config.data.eval_split=val", f"--config.workdir={work}",
    ]  # fmt: skip
    assert cli.main(train) == 0  # in this process, on one device
    trained = _metrics(work)["train_classifier"]
    args = [
        "evaluate", "--config", "paper/evaluate:cas", f"--config.classifier_dir={work}",
        "--config.real.source=imagenet_folder", f"--config.real.data_dir={folder}",
        "--config.real.split=val", "--config.batch_size=8",  # 4 full batches and a padded one
        f"--config.workdir={tmp_path / '2x2'}",
    ]  # fmt: skip
    _run("2x2", args)
    got = _metrics(tmp_path / "2x2")["evaluate"]
    assert got["eval_examples"] == trained["eval_examples"] == 35
    assert 0 < round(got["top1"] * 35) < round(got["top5"] * 35) < 35  # not trivial
    assert round(got["top1"] * 35) == round(trained["top1"] * 35)
    assert round(got["top5"] * 35) == round(trained["top5"] * 35)
