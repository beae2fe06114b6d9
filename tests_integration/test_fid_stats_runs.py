"""``synthaug fid-stats`` as real command lines: SIGKILLed mid-run and resumed, it writes the
statistics of an uninterrupted run, bit for bit; as 2 processes under ``synthaug-launch local``
it writes those of 1 process (float64 sums merged exactly; to rounding, 1e-12 relative).

The feature extractor is the FID Inception with random weights (as the metrics and pipeline
tests use); the subject is the bookkeeping of counts and sums, not the network.
"""

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
from synthaug import metrics as mt

IMAGES = 16  # readable ones, over two classes, and one truncated JPEG


def _synthaug() -> list[str]:
    exe = shutil.which("synthaug", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "synthaug.pipeline.cli"]


def _launcher() -> list[str]:
    exe = shutil.which("synthaug-launch", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "synthaug.tpu_launch.cli"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The image folder, the Inception weights and an environment whose processes share
    JAX's persistent compilation cache (every run compiles the same network)."""
    root = tmp_path_factory.mktemp("fid_stats_runs")
    rng = np.random.default_rng(0)
    for k in range(IMAGES + 1):
        d = root / "imagenet" / "train" / data.label_to_wnid(k % 2)
        d.mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(40, 140, size=2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG" if k % 3 else "PNG")
        raw = buf.getvalue()
        if k == IMAGES:
            raw = raw[: len(raw) // 2]  # truncated: skipped, counted as such
        (d / f"img_{k:03d}.{'jpg' if k % 3 else 'png'}").write_bytes(raw)
    weights = root / "inception.npz"
    np.savez(weights, **mt.random_state_dict(mt.fid_inception_torch_shapes(), seed=0))
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONHASHSEED": "0",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS"):
        env.pop(name, None)
    return root, weights, env


def _args(setup, name: str) -> list[str]:
    root, weights, _ = setup
    return [
        "fid-stats",
        "--config",
        "paper/fid_stats:train64",
        "--config.data.source=imagenet_folder",
        f"--config.data.data_dir={root / 'imagenet'}",
        f"--config.inception_checkpoint={weights}",
        "--config.batch_size=2",
        "--config.checkpoint_every=1",
        "--config.workers=2",
        f"--config.out={root / name / 'stats.npz'}",
        f"--config.workdir={root / name / 'work'}",
    ]


def _run(setup, cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=setup[2], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def uninterrupted(setup):
    """One process, start to end: the statistics and the summary."""
    _run(setup, [*_synthaug(), *_args(setup, "straight")])
    return _outputs(setup[0] / "straight")


def _outputs(run_dir):
    with np.load(run_dir / "stats.npz", allow_pickle=False) as f:
        stats = {k: f[k] for k in f.files}
    summary = json.loads((run_dir / "work" / "metrics.json").read_text())["fid_stats"]
    return stats, summary


def test_uninterrupted_run_counts_every_readable_image(uninterrupted):
    stats, summary = uninterrupted
    assert summary["num_images"] == IMAGES and summary["skipped"] + IMAGES == summary["read"]
    assert sorted(stats) == ["mu", "mu_s", "sigma", "sigma_s"]
    assert stats["sigma"].shape == (2048, 2048) and np.all(np.isfinite(stats["sigma"]))


def test_killed_and_resumed_equals_uninterrupted(setup, uninterrupted):
    root = setup[0]
    part = root / "killed" / "work" / "fid_stats" / "process-00000-of-00001.npz"
    proc = subprocess.Popen(
        [*_synthaug(), *_args(setup, "killed")],
        env=setup[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 400
        while not part.is_file():  # the first batch's sums are on disk
            assert proc.poll() is None, f"fid-stats ended before the kill: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no progress checkpoint was written"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with np.load(part, allow_pickle=False) as f:
        consumed, done = int(f["consumed"]), bool(f["done"])
    assert not done and 0 < consumed < IMAGES  # killed mid-run, after a checkpoint
    assert not (root / "killed" / "stats.npz").exists()  # nothing half-written

    _run(setup, [*_synthaug(), *_args(setup, "killed")])
    stats, summary = _outputs(root / "killed")
    want_stats, want_summary = uninterrupted
    assert summary["resumed_from"] == consumed  # the counted images were not counted again
    # nor read again: the reader is restored at batch consumed / 2 and reads the rest
    batches = want_summary["input"]["batches_read"]
    assert want_summary["input"] == {
        "resumed_from": None,
        "replayed_batches": 0,
        "batches_read": batches,
    }
    assert batches == -(-want_summary["read"] // 2)
    assert summary["input"] == {
        "resumed_from": consumed // 2,
        "replayed_batches": 0,
        "batches_read": batches - consumed // 2,
    }
    for key in ("num_images", "skipped", "read"):
        assert summary[key] == want_summary[key], key
    for key, want in want_stats.items():
        np.testing.assert_array_equal(stats[key], want, err_msg=key)


def test_two_processes_equal_one(setup, uninterrupted):
    root = setup[0]
    cmd = [*_launcher(), "local", "-n", "2", "-k", "1", "--", *_synthaug(), *_args(setup, "2p")]
    _run(setup, cmd)
    stats, summary = _outputs(root / "2p")
    parts = sorted(p.name for p in (root / "2p" / "work" / "fid_stats").iterdir())
    assert parts == ["process-00000-of-00002.npz", "process-00001-of-00002.npz"]
    shares = []
    for name in parts:
        with np.load(root / "2p" / "work" / "fid_stats" / name, allow_pickle=False) as f:
            assert bool(f["done"])
            shares.append(int(f["consumed"]))
    # each process read its own half of the 17 files, none twice
    assert min(shares) >= 8 and sum(shares) == summary["read"]
    want_stats, want_summary = uninterrupted
    assert summary["processes"] == 2
    for key in ("num_images", "skipped", "read"):
        assert summary[key] == want_summary[key], key
    for key, want in want_stats.items():
        # the same float64 sums, merged in another order: equal up to rounding
        scale = np.max(np.abs(want))
        np.testing.assert_allclose(stats[key], want, rtol=0, atol=1e-12 * scale, err_msg=key)
