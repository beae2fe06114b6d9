"""``synthaug select-checkpoint`` ranks a finetune run's kept checkpoints by FID; ``sample``
then draws from the best one (``base.checkpoint_step``) and ``evaluate`` agrees on its FID."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from synthaug import imagenet_data as data
from synthaug import metrics as mt
from synthaug.pipeline import cli

SEED = 20151205  # the random Inception weights of the metrics tests


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_level_unet):
    root = tmp_path_factory.mktemp("select")
    cache = root / "text_cache"
    work = root / "base"
    argv = [
        "finetune",
        "--config",
        "demo/finetune:base",
        f"--config.workdir={work}",
        f"--config.text.cache={cache}",
        "--config.train.num_steps=6",
        "--config.train.batch_size=8",
        "--config.train.save_every=2",
        "--config.train.keep=2",
        "--config.train.log_every=2",
        *(f"--config.{o}" for o in one_level_unet),
    ]
    assert cli.main(argv) == 0
    weights = root / "inception.npz"
    np.savez(weights, **mt.random_state_dict(mt.fid_inception_torch_shapes(), seed=SEED))
    # Reference statistics: 30 real test digits through the same Inception.
    images, _ = data.digits_arrays("test", 16)
    fn = mt.make_feature_fn(mt.load_fid_inception(dict(np.load(weights))), batch_size=30)
    feats = np.asarray(fn(images[:30])[0], np.float64)
    reference = root / "digits_stats.npz"
    mt.save_reference_npz(reference, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
    return {"root": root, "cache": cache, "work": work, "weights": weights, "ref": reference}


def _select(run, *extra):
    return cli.main(
        [
            "select-checkpoint",
            "--config",
            "demo/select_checkpoint",
            f"--config.base.checkpoint={run['work']}",
            f"--config.text.cache={run['cache']}",
            "--config.base.steps=4",
            "--config.batch_size=10",
            "--config.select.num_samples=10",
            "--config.select.fid_batch_size=10",
            f"--config.select.reference={run['ref']}",
            f"--config.select.inception_checkpoint={run['weights']}",
            *extra,
        ]
    )


def test_select_ranks_kept_checkpoints_and_sample_uses_the_best(run, tmp_path, capsys):
    kept = sorted(int(p.name) for p in (run["work"] / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [4, 6]  # train.keep=2 of checkpoints every 2 steps up to 6
    assert _select(run) == 0, capsys.readouterr().err
    sel = json.loads((run["work"] / "checkpoint_selection.json").read_text())
    assert sel["complete"] is True and sel["num_samples"] == 10
    steps = [r["step"] for r in sel["ranking"]]
    fids = [r["fid"] for r in sel["ranking"]]
    assert sorted(steps) == kept
    assert fids == sorted(fids) and all(np.isfinite(fids)) and fids[0] != fids[1]
    assert sel["best_step"] == steps[0] and sel["best_fid"] == fids[0]
    assert not list(run["work"].glob(".*"))  # no scratch samples or temporary files left

    # `sample` from the chosen step, then `evaluate`: the same images, the same FID.
    out = tmp_path / "samples"
    argv = [
        "sample",
        "--config",
        "demo/sample",
        f"--config.base.checkpoint={run['work']}",
        f"--config.base.checkpoint_step={sel['best_step']}",
        "--config.base.steps=4",
        "--config.sr1.enabled=false",
        f"--config.text.cache={run['cache']}",
        "--config.per_class=1",
        "--config.batch_size=10",
        f"--config.out_dir={out}",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    argv = [
        "evaluate",
        "--config.metrics=fid",
        f"--config.samples_dir={out}",
        f"--config.reference={run['ref']}",
        f"--config.inception_checkpoint={run['weights']}",
        "--config.num_samples=10",
        "--config.batch_size=10",
        f"--config.workdir={tmp_path / 'eval'}",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    fid = json.loads((tmp_path / "eval" / "metrics.json").read_text())["evaluate"]["fid"]
    assert fid == pytest.approx(sel["best_fid"], rel=1e-6)


def test_select_unknown_step_is_one_line_exit_2(run, capsys):
    assert (
        _select(run, "--config.select.steps=(3,)", f"--config.select.out={run['root']}/x.json") == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "[3]" in err and "kept" in err
    assert not (run["root"] / "x.json").exists()


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_scratch_samples_are_split_over_processes_in_whole_batches(processes, tmp_path):
    """The scratch ``sample`` config: shards of whole batches, one part per process, so
    batches start at multiples of ``batch_size`` (the same images) on any process count."""
    from synthaug.imagenet_data import host_range
    from synthaug.pipeline.config import load_config
    from synthaug.pipeline.select_checkpoint import _sample_config

    cfg = load_config("demo/select_checkpoint", "select-checkpoint", ["batch_size=4"])
    scfg = _sample_config(cfg, 6, tmp_path / "s", 2, 10, processes)
    assert scfg.stage == "sample" and scfg.base.checkpoint_step == 6 and scfg.per_class == 2
    shard = int(scfg.shard_size)
    assert shard % 4 == 0
    parts = [host_range(20, shard, p, processes) for p in range(processes)]
    assert parts[0][0] == 0 and parts[-1][1] == 20
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))  # contiguous, disjoint
    assert all(stop > start for start, stop in parts)  # every process samples a part
