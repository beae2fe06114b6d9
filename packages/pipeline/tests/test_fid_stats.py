"""``synthaug fid-stats`` against PIL + guided-diffusion's center_crop_arr + pytorch-fid.

The golden features come from tools/fixtures/make_pipeline_fid_stats.py (see
tests/fixtures/README.md); the Inception weights are the random ones the metrics tests use.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug import metrics as mt
from synthaug.pipeline import cli
from synthaug.pipeline.fid_stats import center_crop_arr

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "fid_stats_golden.npz"
COPIES = 1  # seven readable images and a truncated JPEG


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURE, allow_pickle=False) as f:
        g = {k: f[k] for k in f.files}
    g["meta"] = json.loads(str(g["meta"]))
    return g


def make_imagenet_folder(root: pathlib.Path, golden) -> pathlib.Path:
    """``root/train/<wnid>/*.JPEG``: the fixture files, ``COPIES`` times, over two classes."""
    names = [str(n) for n in golden["names"]]
    for c in range(COPIES):
        for k, name in enumerate(names):
            d = root / "train" / data.label_to_wnid((c + k) % 2)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"c{c}_{name}").write_bytes(golden[f"file_{k}"].tobytes())
    return root


def write_inception(path: pathlib.Path, seed: int) -> pathlib.Path:
    sd = mt.random_state_dict(mt.fid_inception_torch_shapes(), seed=seed)
    np.savez(path, **sd)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, golden):
    root = tmp_path_factory.mktemp("fid_stats")
    folder = make_imagenet_folder(root / "imagenet", golden)
    weights = write_inception(root / "inception.npz", golden["meta"]["seed"])
    return folder, weights


def _expected(golden, size):
    pool = np.tile(golden[f"pool3_{size}"].astype(np.float64), (COPIES, 1))
    spatial = np.tile(golden[f"spatial_{size}"].astype(np.float64), (COPIES, 1))
    return {
        "mu": pool.mean(0),
        "sigma": np.cov(pool, rowvar=False),
        "mu_s": spatial.mean(0),
        "sigma_s": np.cov(spatial, rowvar=False),
    }


def test_center_crop_matches_guided_diffusion(golden):
    names = [str(n) for n in golden["names"]]
    crops = []
    for k in range(len(names) - 1):  # the last file is the truncated JPEG
        with Image.open(io.BytesIO(golden[f"file_{k}"].tobytes())) as im:
            im.load()
            crops.append(center_crop_arr(im.convert("RGB"), 64))
    np.testing.assert_array_equal(np.stack(crops), golden["crops_64"])


@pytest.mark.parametrize("size", [64, 256])
def test_fid_stats_equal_pil_plus_pytorch_fid(tmp_path, inputs, golden, size, capsys):
    folder, weights = inputs
    out = tmp_path / f"train_{size}.npz"
    argv = [
        "fid-stats",
        "--config",
        f"paper/fid_stats:train{size}",
        "--config.data.source=imagenet_folder",
        f"--config.data.data_dir={folder}",
        f"--config.inception_checkpoint={weights}",
        "--config.batch_size=3",  # 8 files: 3 + 3 + a padded batch of 1 readable
        f"--config.out={out}",
        f"--config.workdir={tmp_path / 'work'}",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    ref = mt.load_reference_npz(out)
    exp = _expected(golden, size)
    for key, want in exp.items():
        got = getattr(ref, key)
        assert got.shape == want.shape, key
        scale = np.max(np.abs(want))
        assert np.max(np.abs(got - want)) < 2e-4 * scale, key
    with np.load(out) as f:  # exactly ADM's keys, float64, as its evaluator reads them
        assert sorted(f.files) == ["mu", "mu_s", "sigma", "sigma_s"]
        assert all(f[k].dtype == np.float64 for k in f.files)
    summary = json.loads((tmp_path / "work" / "metrics.json").read_text())["fid_stats"]
    assert summary["num_images"] == 7 * COPIES  # the truncated JPEG is left out
    assert summary["processes"] == 1 and summary["resumed_from"] == 0


def test_fid_stats_bad_inputs_are_one_line_exit_2(tmp_path, inputs, capsys):
    folder, weights = inputs
    base = [
        "fid-stats",
        "--config",
        "paper/fid_stats:val64",
        "--config.data.source=imagenet_folder",
        f"--config.out={tmp_path / 'out.npz'}",
        f"--config.workdir={tmp_path / 'work'}",
    ]
    cases = [
        (
            [
                f"--config.data.data_dir={tmp_path / 'none'}",
                f"--config.inception_checkpoint={weights}",
            ],
            "data directory",
        ),
        (
            [
                f"--config.data.data_dir={folder}",
                f"--config.inception_checkpoint={tmp_path / 'x.pth'}",
            ],
            "Inception weights",
        ),
        (
            [
                f"--config.data.data_dir={folder}",
                f"--config.inception_checkpoint={weights}",
                "--config.image_size=0",
            ],
            "image_size",
        ),
    ]
    for extra, needle in cases:
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and needle in err, err
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "work").exists()
