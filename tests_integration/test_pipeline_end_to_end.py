"""The quick demo end to end, then a SIGKILL and resume of ``synthaug sample`` on its models.

Both tests share one run of ``synthaug demo --quick`` (module scope; the file runs in one
worker), whose trained diffusion models and prompt cache the resume test samples from.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def demo_out(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    proc = cli.run("demo", "--out", str(out), "--quick", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _finite(x, lo=-math.inf, hi=math.inf) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and lo <= x <= hi


def test_quick_demo_writes_every_artifact(demo_out):
    report = (demo_out / "report.md").read_text()
    for heading in (
        "## What the toy reproduces",
        "## Accuracy on the real test split",
        "## Data-size sweep",
        "## Fréchet distance in classifier features",
        "## Guidance sweep (base model)",
        "## Samples",
        "## Wall time per stage",
    ):
        assert heading in report
    assert "not Inception FID" in report
    # Every figure the report links exists and is a readable PNG.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert any("guidance_sweep" in x for x in links)
    assert any("data_size_sweep" in x for x in links)
    assert "(c) − (a), paired over seeds" in report and "% CI" in report
    per_class = [x for x in links if re.search(r"samples_\d_", x)]
    assert len(per_class) == 10
    for link in links:
        with Image.open(demo_out / link) as im:
            im.load()
            assert im.size[0] > 30 and im.size[1] > 30

    m = json.loads((demo_out / "metrics.json").read_text())["demo"]
    assert set(m["accuracy"]) == {"real", "synthetic", "mixed", "real_full", "synthetic_sr"}
    cfg = m["config"]
    seeds = m["seeds"]
    assert len(seeds) == cfg["seeds"] >= 3 and len(set(seeds)) == len(seeds)
    for mode, acc in m["accuracy"].items():
        assert _finite(acc["top1"], 0.0, 1.0), mode
        assert _finite(acc["top5"], acc["top1"], 1.0), mode
        assert acc["train_examples"] > 0
        assert len(acc["top1_per_seed"]) == len(seeds), mode
        assert acc["top1"] == pytest.approx(np.mean(acc["top1_per_seed"]))
        assert acc["top1_std"] == pytest.approx(np.std(acc["top1_per_seed"], ddof=1))
    gain = m["mixed_minus_real_top1"]
    diffs = np.subtract(
        m["accuracy"]["mixed"]["top1_per_seed"], m["accuracy"]["real"]["top1_per_seed"]
    )
    assert gain["mean"] == pytest.approx(diffs.mean()) and gain["n"] == len(seeds)
    assert gain["low"] <= gain["mean"] <= gain["high"]
    sizes = m["size_sweep"]
    assert [r["multiple"] for r in sizes] == [0.0, *sorted(cfg["size_sweep"])]
    n_real = cfg["real_per_class"] * 10
    for r in sizes:
        assert r["synthetic_images"] == round(r["multiple"] * n_real)
        assert r["train_examples"] == n_real + r["synthetic_images"]
        assert len(r["top1"]) == len(seeds)
    # Above chance (10% top-1, 50% top-5 over 10 classes) by a margin. Measured (3 seeds,
    # 8×8 classifiers of 60 steps): top-1 real subset (2 per class) 67.8%, all real train
    # images 81.5%, real + synthetic 53.9% (45.7-58.5% per seed); top-5 89-99%. A classifier
    # that learns nothing, or too little (20 steps gave real 30%, real_full 10%), fails. The
    # quick generator (40 fine-tuning steps) draws no recognisable digits, so the synthetic
    # classifiers (CAS) score at chance (10-15%) and are only checked to be valid numbers, and
    # its 100 synthetic images dilute the 20 real ones in (c), which is checked only to learn.
    for mode in ("real", "real_full"):
        acc = m["accuracy"][mode]
        assert acc["top1"] >= 0.10 + 0.40, (mode, acc)
        assert acc["top5"] >= 0.50 + 0.30, (mode, acc)
    assert m["accuracy"]["mixed"]["top1"] >= 0.10 + 0.20, m["accuracy"]["mixed"]
    assert m["accuracy"]["mixed"]["top5"] >= 0.50 + 0.25, m["accuracy"]["mixed"]
    assert m["accuracy"]["real_full"]["top1"] >= m["accuracy"]["real"]["top1"] - 0.1
    assert m["cas_top1"] == m["accuracy"]["synthetic"]["top1"]
    assert m["accuracy"]["mixed"]["train_examples"] == (
        m["accuracy"]["real"]["train_examples"] + m["accuracy"]["synthetic"]["train_examples"]
    )
    for name, fd in m["frechet_distance_classifier_features"].items():
        assert _finite(fd, 0.0), name
    sweep = m["guidance_sweep"]
    assert [r["guidance"] for r in sweep] == list(cfg["sweep"]["guidance"])
    assert len(sweep) >= 5
    for r in sweep:
        assert len(r["cas_top1"]) == cfg["sweep"]["seeds"]
        assert all(_finite(v, 0.0, 1.0) for v in r["cas_top1"])
        assert _finite(r["frechet_distance"], 0.0)
    # The synthetic set is class-balanced, large enough for the largest size-sweep multiple.
    per_class = max(cfg["sample"]["per_class"], math.ceil(n_real / 10 * max(cfg["size_sweep"])))
    assert m["synthetic"]["per_class"] == [per_class] * 10
    assert m["synthetic"]["image_size"] == [16, 16]  # the base model's samples
    assert m["synthetic_sr"]["image_size"] == [32, 32]
    assert m["synthetic_sr"]["per_class"] == [cfg["sweep"]["per_class"]] * 10
    times = m["wall_time_s"]
    stages = ("text encoder", "finetune base", "finetune sr", "sample", "sample sr")
    for stage in (*stages, "train classifiers"):
        assert _finite(times[stage], 0.0) and times[stage] > 0
    assert times["total"] >= sum(v for k, v in times.items() if k != "total") - 1e-6
    assert list((demo_out / "tb").glob("events.out.tfevents.*"))
    manifest = json.loads((demo_out / "synthetic" / "manifest.json").read_text())
    assert manifest["count_per_class"] == {str(k): per_class for k in range(10)}
    assert not list(demo_out.rglob(".*.tmp"))  # no temporary files left


def _read_shards(out_dir):
    import tensorflow as tf

    feats = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/index": tf.io.FixedLenFeature([], tf.int64),
    }
    rows = []
    for f in sorted(out_dir.glob("synthetic-*.tfrecord")):
        for rec in tf.data.TFRecordDataset(str(f)):
            ex = tf.io.parse_single_example(rec, feats)
            rows.append(
                (
                    int(ex["image/index"]),
                    int(ex["image/class/label"]),
                    bytes(ex["image/encoded"].numpy()),
                )
            )
    return rows


def test_sample_survives_sigkill_and_resumes(cli, demo_out, tmp_path):
    out = tmp_path / "shards"
    per_class, shard = 5, 5
    args = [
        "sample",
        "--config",
        "demo/sample",
        f"--config.base.checkpoint={demo_out / 'diffusion_base'}",
        f"--config.sr1.checkpoint={demo_out / 'diffusion_sr'}",
        f"--config.text.cache={demo_out / 'text_cache'}",
        "--config.base.steps=10",
        "--config.sr1.steps=5",
        f"--config.shard_size={shard}",
        f"--config.batch_size={shard}",
        f"--config.out_dir={out}",
    ]
    proc = cli.popen(*args, f"--config.per_class={per_class}")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (out / "synthetic-00001.tfrecord").is_file():
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"sample ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    before = {i: data for i, _, data in _read_shards(out)}
    assert 2 * shard <= len(before) < 10 * per_class

    done = cli.run(*args, f"--config.per_class={per_class}", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _read_shards(out)
    indices = [i for i, _, _ in rows]
    assert sorted(indices) == list(range(10 * per_class)), "an image is duplicated or missing"
    labels = dict((i, lab) for i, lab, _ in rows)
    plan = np.tile(np.arange(10), per_class)
    assert [labels[i] for i in range(len(plan))] == plan.tolist()
    after = {i: data for i, _, data in rows}
    assert all(after[i] == before[i] for i in before)  # finished shards are kept as they were
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_examples"] == 10 * per_class
    assert manifest["count_per_class"] == {str(k): per_class for k in range(10)}

    # What an image looks like does not depend on the interruption: an uninterrupted run of
    # the first shards (a prefix of the same plan) gives the same bytes, including shards
    # written after the resume.
    fresh = tmp_path / "fresh"
    args_fresh = [
        a if not a.startswith("--config.out_dir=") else f"--config.out_dir={fresh}" for a in args
    ]
    ok = cli.run(*args_fresh, "--config.per_class=3", timeout=900)
    assert ok.returncode == 0, ok.stderr[-3000:]
    fresh_rows = _read_shards(fresh)
    assert len(fresh_rows) == 30
    assert any(i not in before for i, _, _ in fresh_rows)
    for i, _, data in fresh_rows:
        assert data == after[i], f"image {i} differs from an uninterrupted run"


def test_quick_demo_same_seed_gives_same_numbers(demo_out):
    """The demo's base synthetic set, re-sampled from its saved base model, and its real and
    real + synthetic classifiers, re-trained with every seed in a fresh process, equal the
    run's images and per-seed accuracies exactly."""
    import subprocess
    import sys

    script = (
        "import json, sys; from synthaug.pipeline.demo import reproduce; "
        "print(json.dumps(reproduce(sys.argv[1])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(demo_out)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert again["synthetic_identical"] is True
    acc = json.loads((demo_out / "metrics.json").read_text())["demo"]["accuracy"]
    for row in ("real", "mixed"):
        assert again["top1"][row] == acc[row]["top1_per_seed"], row
