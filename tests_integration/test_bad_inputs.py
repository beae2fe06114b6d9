"""Bad inputs and faults across the command line, readers, writers, checkpoints and numerics.

Every case asserts its exact outcome: one line naming the input (``synthaug: error: ...`` and
exit code 2 at the command line, one exception naming it at a library call) and a directory
listing with modes and SHA-256 hashes that is the same before and after. The command runs
in-process through ``synthaug.pipeline.cli.main`` (the code path of the console script without
a TensorFlow import per case); the fixtures (a synthetic shard set, a tiny model checkpoint)
are built once for the module.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import pickle
import shutil
import struct
import zipfile

import numpy as np
import pytest

from synthaug.pipeline import cli

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def cli_fails(capsys, tree_snapshot, argv, *needles, watch=()) -> str:
    """Run the CLI: exit code 2, one error line holding every needle, ``watch`` unchanged."""
    before = {str(w): tree_snapshot(w) for w in watch}
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    lines = [x for x in err.strip().splitlines() if x.strip()]
    # Progress lines of the work done before a late failure may precede it; the error is the
    # last line, the only one of its kind, and no traceback is printed.
    assert lines and lines[-1].startswith("synthaug: error: "), err[-3000:]
    assert sum("synthaug: error" in x for x in lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[-1], (needle, lines[-1])
    for w in watch:
        assert tree_snapshot(w) == before[str(w)], f"{w} changed"
    return lines[-1]


@pytest.fixture
def fails(capsys, monkeypatch, tmp_path, snapshot):
    monkeypatch.chdir(tmp_path)  # a config's relative defaults land in tmp_path, not the repo
    return lambda argv, *needles, watch=(): cli_fails(capsys, snapshot, argv, *needles, watch=watch)


# -- module fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A complete synthetic set: 12 examples of 3 digit classes in shards of 4."""
    from synthaug import imagenet_data as data

    out = tmp_path_factory.mktemp("shards") / "set"
    rng = np.random.default_rng(0)
    w = data.SyntheticShardWriter(out, 4, metadata={"num_classes": 10})
    w.write(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), np.arange(12) % 3)
    w.close()
    return out


@pytest.fixture
def shard_copy(shards, tmp_path):
    out = tmp_path / "set"
    shutil.copytree(shards, out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A finetune workdir of the demo's tiny base model: model.json and two checkpoint steps
    of initialised (finite) parameters, without training."""
    import jax

    from synthaug import diffusion_core as dc
    from synthaug.io.checkpoint import Checkpointer
    from synthaug.pipeline.config import load_config
    from synthaug.pipeline.models import diffusion_config, write_model_info

    work = tmp_path_factory.mktemp("model") / "base"
    work.mkdir()
    cfg = load_config("demo/finetune:base", "finetune", [f"workdir={work}"])
    dcfg = diffusion_config(cfg)
    write_model_info(work, cfg.preset, dcfg)
    model = dc.make_model(dcfg)
    size, text_dim = dcfg.model.image_size, dcfg.model.text_dim
    params = model.init(
        jax.random.key(0),
        np.zeros((1, size, size, 3), np.float32),
        np.zeros((1,), np.float32),
        np.zeros((1, 4, text_dim), np.float32),
        np.ones((1, 4), bool),
    )["params"]
    params = jax.tree.map(np.asarray, params)
    with Checkpointer(work / "checkpoints", async_save=False, keep=5) as ck:
        for s in (1, 2):
            ck.save(s, {"ema_params": params}, force=True)
    return work, params


def sample_args(out, checkpoint, *extra):
    return [
        "sample",
        "--config",
        "demo/sample",
        f"--config.base.checkpoint={checkpoint}",
        "--config.sr1.enabled=false",
        "--config.classes=zero,one",
        "--config.per_class=1",
        "--config.shard_size=2",
        "--config.batch_size=2",
        "--config.base.steps=2",
        f"--config.out_dir={out}",
        *extra,
    ]


TINY_CLS = [
    "--config.recipe.epochs=1",
    "--config.recipe.batch_size=10",
    "--config.data.real.per_class=2",
]


# -- 1. the command line and configs -----------------------------------------------------------

CONFIG_CASES = {
    "unknown key": (
        ["sample", "--config", "demo/sample", "--config.per_klass=3"],
        ["per_klass"],
    ),
    "unknown nested key": (
        ["train-classifier", "--config", "demo/classifier", "--config.recipe.lr=0.1"],
        ["recipe.lr"],
    ),
    "wrong type int": (
        ["sample", "--config", "demo/sample", "--config.per_class=lots"],
        ["per_class", "lots"],
    ),
    "wrong type bool": (
        ["sample", "--config", "demo/sample", "--config.sr1.enabled=maybe"],
        ["sr1.enabled", "maybe"],
    ),
    "wrong type float": (
        ["sample", "--config", "demo/sample", "--config.base.guidance=high"],
        ["base.guidance", "high"],
    ),
    "malformed override": (
        ["sample", "--config", "demo/sample", "--config.=3"],
        ["--config.=3"],
    ),
    "bad variant": (
        ["train-classifier", "--config", "demo/classifier:semisynthetic"],
        ["semisynthetic"],
    ),
    "unknown config name": (["train-classifier", "--config", "paper/resnet9000"], ["resnet9000"]),
    "config of another stage": (["sample", "--config", "demo/classifier"], ["demo/classifier"]),
    "override swallows the next flag": (
        [
            "train-classifier",
            "--config",
            "demo/classifier",
            "--config.workdir",
            "--config.recipe.epochs=5",
        ],
        ["--config.workdir has no value"],
    ),
    "override without value at the end": (
        ["sample", "--config", "demo/sample", "--config.per_class"],
        ["per_class"],
    ),
    "quick with a full variant": (
        ["demo", "--config", "demo/default:full", "--quick"],
        ["--quick", "'full'"],
    ),
    "unknown mesh axis": (
        ["train-classifier", "--config", "demo/classifier", "--config.mesh.tensor=2"],
        ["mesh.tensor"],
    ),
    "mesh larger than the devices": (
        [
            "train-classifier",
            "--config",
            "demo/classifier",
            "--config.mesh.data=3",
            "--config.mesh.fsdp=5",
        ],
        ["mesh"],
    ),
    "unknown digit class": (
        ["sample", "--config", "demo/sample", "--config.classes=zero,eleven"],
        ["eleven"],
    ),
    "unknown imagenet class": (
        [
            "sample",
            "--config",
            "paper/sample_final",
            "--config.classes=tench,unicorn",
        ],
        ["unicorn"],
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors(fails, tmp_path, case):
    argv, needles = CONFIG_CASES[case]
    out = tmp_path / "out"
    if argv[0] == "sample":
        argv = [*argv, f"--config.out_dir={out}"]
    elif argv[0] == "train-classifier" and "--config.workdir" not in argv:
        argv = [*argv, f"--config.workdir={out}"]
    fails(argv, *needles, watch=[tmp_path])
    assert not out.exists()


SAMPLER_CASES = {
    "guidance nan": ("base.guidance=nan", "base.guidance must be a finite number >= 0"),
    "guidance inf": ("base.guidance=inf", "base.guidance must be a finite number >= 0"),
    "guidance negative": ("base.guidance=-1", "base.guidance must be a finite number >= 0"),
    "log-variance mix out of range": (
        "base.log_var_mix=1.5",
        "base.log_var_mix must lie in [0, 1]",
    ),
    "percentile zero": ("base.threshold_percentile=0", "base.threshold_percentile must lie in"),
    "percentile above 100": ("base.threshold_percentile=100.5", "threshold_percentile"),
    "zero steps": ("base.steps=0", "base.steps must lie in [1,"),
    "negative steps": ("base.steps=-3", "base.steps must lie in [1,"),
    "zero batch": ("batch_size=0", "batch_size must be >= 1"),
    "zero per class": ("per_class=0", "per_class"),
}


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_sampler_settings_before_any_write(fails, tiny_model, tmp_path, case):
    override, needle = SAMPLER_CASES[case]
    out = tmp_path / "out"
    fails(sample_args(out, tiny_model[0], f"--config.{override}"), needle, watch=[tiny_model[0]])
    assert not out.exists()  # no writer.json, no run.json


# -- 2. missing inputs and bad output paths ----------------------------------------------------


def test_missing_checkpoint(fails, tmp_path):
    out = tmp_path / "out"
    fails(sample_args(out, tmp_path / "no_such_ckpt"), "no_such_ckpt", watch=[tmp_path])


def test_missing_synthetic_dir(fails, tmp_path):
    argv = ["train-classifier", "--config", "demo/classifier:synthetic", *TINY_CLS]
    argv += [f"--config.data.synthetic_dir={tmp_path / 'nope'}", f"--config.workdir={tmp_path}/w"]
    fails(argv, "nope", watch=[tmp_path])


def test_missing_classifier_dir(fails, tmp_path):
    argv = ["evaluate", "--config", "paper/evaluate:cas", "--config.real.source=digits"]
    argv += [f"--config.classifier_dir={tmp_path / 'nope'}", f"--config.workdir={tmp_path}/w"]
    fails(argv, "nope", watch=[tmp_path])


def test_missing_report_input(fails, tmp_path):
    fails(["report", tmp_path / "no_run", "--out", tmp_path / "r.md"], "no_run", watch=[tmp_path])


def test_workdir_is_a_file(fails, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep me")
    argv = ["train-classifier", "--config", "demo/classifier", *TINY_CLS]
    fails([*argv, f"--config.workdir={f}"], str(f), "not a directory", watch=[tmp_path])
    fails([*argv, f"--config.workdir={f}/sub"], f"{f}/sub", watch=[tmp_path])


def test_unwritable_output_path(fails, tmp_path):
    if pathlib.Path("/sys/kernel").is_dir():  # read-only for every user, root included
        target, needle = pathlib.Path("/sys/synthaug-test/out"), "synthaug-test"
    elif os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = needle = ro / "out"
    else:
        pytest.skip("no unwritable directory here")
    argv = ["train-classifier", "--config", "demo/classifier", f"--config.workdir={target}"]
    fails(argv, needle, watch=[tmp_path])


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"finetune": {"steps": 3,', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("", "not valid JSON"),
    ],
    ids=["truncated", "not-an-object", "empty"],
)
def test_malformed_metrics_json(fails, tmp_path, text, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(text)
    fails(
        ["report", run, "--out", tmp_path / "r.md"], run / "metrics.json", needle, watch=[tmp_path]
    )


# -- 3. a run directory belongs to one run -----------------------------------------------------


def test_sample_into_another_runs_out_dir(fails, tiny_model, tmp_path):
    from synthaug.pipeline import rundir
    from synthaug.pipeline.config import load_config

    out = tmp_path / "out"
    argv = sample_args(out, tiny_model[0])
    cfg = load_config("demo/sample", "sample", [a.removeprefix("--config.") for a in argv[3:]])
    rundir.claim(out, cfg, "sample", what="out_dir")
    (out / "synthetic-00000.tfrecord").write_bytes(b"an earlier run's shard")
    fails([*argv, "--config.seed=7"], "seed 0 -> 7", str(out), watch=[out])
    fails([*argv, "--config.base.guidance=3.5"], "base.guidance", watch=[out])


def test_finetune_of_another_model_in_a_workdir(fails, tmp_path):
    from synthaug.pipeline import rundir
    from synthaug.pipeline.config import load_config

    work = tmp_path / "w"
    rundir.claim(
        work, load_config("demo/finetune:base", "finetune", [f"workdir={work}"]), "finetune"
    )
    (work / "model.json").write_text('{"preset": "tiny_base"}')
    argv = ["finetune", "--config", "demo/finetune:sr", f"--config.workdir={work}"]
    fails(argv, "preset 'tiny_base' -> 'tiny_sr'", "--config.overwrite", watch=[work])


def test_workdir_without_a_run_record(fails, tmp_path):
    work = tmp_path / "w"
    (work / "checkpoints").mkdir(parents=True)
    (work / "classifier.json").write_text("{}")
    argv = ["train-classifier", "--config", "demo/classifier", f"--config.workdir={work}"]
    fails(argv, "no run.json", watch=[work])


def test_demo_with_another_seed_over_an_old_output(fails, tmp_path):
    from synthaug.pipeline import rundir
    from synthaug.pipeline.config import load_config

    out = tmp_path / "demo_out"
    rundir.claim(out, load_config("demo/default:quick", "demo"), "demo", what="out")
    (out / "report.md").write_text("# an earlier demo\n")
    fails(["demo", "--quick", "--out", out, "--config.seed=1"], "seed 0 -> 1", watch=[out])


# -- 4. damaged synthetic shards at the stage that reads them ---------------------------------


def _train_on(set_dir, tmp_path):
    return [
        "train-classifier",
        "--config",
        "demo/classifier:synthetic",
        *TINY_CLS,
        f"--config.data.synthetic_dir={set_dir}",
        f"--config.workdir={tmp_path / 'w'}",
    ]


def _flip(path, at):
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


SHARD_FAULTS = {
    "truncated shard": lambda d: os.truncate(
        d / "synthetic-00001.tfrecord", (d / "synthetic-00001.tfrecord").stat().st_size // 2
    ),
    "empty shard": lambda d: (d / "synthetic-00001.tfrecord").write_bytes(b""),
    "flipped byte in a record": lambda d: _flip(
        d / "synthetic-00001.tfrecord", (d / "synthetic-00001.tfrecord").stat().st_size // 2
    ),
    "flipped byte in a length": lambda d: _flip(d / "synthetic-00001.tfrecord", 1),
    "sidecar count differs": lambda d: (d / "synthetic-00001.tfrecord.json").write_text(
        json.dumps({**json.loads((d / "synthetic-00001.tfrecord.json").read_text()), "count": 3})
    ),
    "manifest count differs": lambda d: (d / "manifest.json").write_text(
        json.dumps(
            {
                **(m := json.loads((d / "manifest.json").read_text())),
                "shards": [{**m["shards"][0], "count": 5}, *m["shards"][1:]],
            }
        )
    ),
    "shard missing": lambda d: (d / "synthetic-00001.tfrecord").unlink(),
    "malformed manifest": lambda d: (d / "manifest.json").write_text('{"shards": ['),
}


@pytest.mark.parametrize("case", sorted(SHARD_FAULTS))
def test_damaged_synthetic_set_is_refused(fails, shard_copy, tmp_path, case):
    SHARD_FAULTS[case](shard_copy)
    needle = "manifest.json" if "manifest" in case else "synthetic-00001.tfrecord"
    fails(_train_on(shard_copy, tmp_path), needle, watch=[tmp_path])


def test_garbage_jpeg_is_skipped_by_name(shard_copy, tmp_path):
    """A JPEG whose body is garbage: skipped and named, the others read (library boundary)."""
    import tensorflow as tf

    from synthaug import imagenet_data as d

    good = tf.io.encode_jpeg(np.full((32, 32, 3), 128, np.uint8)).numpy()
    body = np.random.default_rng(1).integers(0, 256, len(good) - 300, np.uint8).tobytes()
    path = tmp_path / "val-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as w:
        for name, img in (("a.JPEG", good), ("garbage.JPEG", good[:200] + body + b"\xff\xd9")):
            feat = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
                "image/filename": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[name.encode()])
                ),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
    report = d.DataReport()
    out = list(d.from_tfrecords(str(path), report=report).as_numpy_iterator())
    assert (
        list(report.skipped) == ["garbage.JPEG"]
        and "cannot decode" in report.skipped["garbage.JPEG"]
    )
    assert 2 - report.num_skipped == len(out) == 1


# -- 5. hostile and malformed weight files -----------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile(path, marker, layout):
    evil = pickle.dumps({"w": _Payload(marker)}, protocol=2)
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", evil)
            zf.writestr("archive/byteorder", "little")
    elif layout == "legacy-magic":  # the payload where the magic number belongs
        path.write_bytes(evil + pickle.dumps(1001, protocol=2))
    else:  # a genuine legacy header, the payload in the state dict
        path.write_bytes(
            pickle.dumps(LEGACY_MAGIC, protocol=2)
            + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001}, protocol=2)
            + evil
        )


def _evaluate_with(weights, tmp_path):
    (tmp_path / "samples").mkdir(exist_ok=True)
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    return [
        "evaluate",
        "--config",
        "paper/evaluate:val256",
        f"--config.samples_dir={tmp_path / 'samples'}",
        f"--config.reference={tmp_path / 'ref.npz'}",
        f"--config.inception_checkpoint={weights}",
        f"--config.workdir={tmp_path / 'out'}",
    ]


@pytest.mark.parametrize("layout", ["zip", "legacy-magic", "legacy-body"])
def test_hostile_pth_never_runs(fails, tmp_path, layout):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "inception.pth"
    _hostile(evil, marker, layout)
    fails(_evaluate_with(evil, tmp_path), str(evil), "system", watch=[tmp_path])
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy-body"])
def test_hostile_pt_import_weights_never_runs(fails, tmp_path, layout):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "adm.pt"
    _hostile(evil, marker, layout)
    argv = ["import-weights", "--from", "adm", evil, "--out", tmp_path / "out", "--preset"]
    fails([*argv, "tiny_adm"], str(evil), watch=[tmp_path])
    assert not marker.exists()


NON_TORCH = {
    "text file": b"these are not weights\n",
    "empty file": b"",
    "zip without a pickle": None,
    "png header": b"\x89PNG\r\n\x1a\n" + bytes(64),
}


@pytest.mark.parametrize("case", sorted(NON_TORCH))
def test_not_a_torch_file(fails, tmp_path, case):
    path = tmp_path / "inception.pth"
    if NON_TORCH[case] is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/readme.txt", "hello")
    else:
        path.write_bytes(NON_TORCH[case])
    fails(_evaluate_with(path, tmp_path), str(path), watch=[tmp_path])


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


SAFETENSORS = {
    "header longer than the file": struct.pack("<Q", 10**9) + b"{}",
    "header not JSON": _safetensors(b"{not json"),
    "offsets past the end": _safetensors(
        json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode(),
        bytes(8),
    ),
    "unknown dtype": _safetensors(
        json.dumps({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}).encode(), bytes(4)
    ),
    "shape disagrees with bytes": _safetensors(
        json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode(),
        bytes(8),
    ),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS))
def test_malformed_safetensors(fails, tmp_path, case):
    path = tmp_path / "model.safetensors"
    path.write_bytes(SAFETENSORS[case])
    argv = ["import-weights", "--from", "deepfloyd-if", path, "--out", tmp_path / "out"]
    fails([*argv, "--preset", "tiny_if"], str(path), watch=[tmp_path])


# -- 6. checkpoints ----------------------------------------------------------------------------


def _damaged_copy(tiny_model, tmp_path, how):
    work = tmp_path / "model"
    shutil.copytree(tiny_model[0], work)
    step = work / "checkpoints" / "2"
    files = sorted((p for p in step.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if how == "truncated":
        os.truncate(files[-1], files[-1].stat().st_size // 2)
    else:
        for f in files:
            f.write_bytes(b"")
    return work


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_damaged_latest_checkpoint_falls_back(capsys, caplog, snapshot, tiny_model, tmp_path, how):
    tree_snapshot = snapshot
    work = _damaged_copy(tiny_model, tmp_path, how)
    before = tree_snapshot(work)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = cli.main([str(a) for a in sample_args(out, work)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    warned = [r.getMessage() for r in caplog.records] + err.splitlines()
    assert any("step 2 is damaged" in m for m in warned), warned
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_examples"] == 2
    assert tree_snapshot(work) == before  # the model's directory is only read


def test_every_checkpoint_damaged_fails_in_one_line(fails, tiny_model, tmp_path):
    work = _damaged_copy(tiny_model, tmp_path, "empty")
    for f in (work / "checkpoints" / "1").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")
    fails(sample_args(tmp_path / "out", work), "checkpoints", watch=[tmp_path])


def test_nan_model_stops_before_writing_samples(fails, tiny_model, tmp_path):
    import jax

    from synthaug.io.checkpoint import Checkpointer

    work = tmp_path / "nan_model"
    work.mkdir()
    shutil.copy(tiny_model[0] / "model.json", work / "model.json")
    nan = jax.tree.map(lambda p: np.full_like(p, np.nan), tiny_model[1])
    with Checkpointer(work / "checkpoints", async_save=False) as ck:
        ck.save(0, {"ema_params": nan}, force=True)
    out = tmp_path / "out"
    fails(sample_args(out, work), "examples 0..1", "NaN or infinite")
    assert not list(out.glob("synthetic-*.tfrecord")) and not (out / "manifest.json").exists()


def test_diverging_classifier_keeps_no_nan_checkpoint(fails, tmp_path):
    work = tmp_path / "w"
    argv = ["train-classifier", "--config", "demo/classifier", *TINY_CLS]
    argv += ["--config.recipe.epochs=2", "--config.recipe.base_lr=1e30"]
    fails([*argv, f"--config.workdir={work}"], "diverged at step", "base_lr")
    ckpts = work / "checkpoints"
    steps = [p for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.exists() else []
    if steps:  # only good states were saved: every kept step restores to finite numbers
        from synthaug import classifiers as cl

        state = cl.load_classifier(work)
        import jax

        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
    assert not (work / "classifier.json").exists() or steps


# -- 7. numerics at the library boundary -------------------------------------------------------


def test_out_of_range_eval_labels():
    from synthaug import classifiers as cl

    recipe = cl.demo_recipe("resnet_tiny", num_classes=3, batch_size=4, epochs=1, image_size=8)
    state = {"params": {}, "batch_stats": {}}  # refused before the model runs
    images = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"eval_labels must be in \[0, 3\).*\[0, 3\]"):
        cl.evaluate(recipe, state, images, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"eval_labels must be in \[0, 3\).*\[-1, 2\]"):
        cl.evaluate(recipe, state, images, np.array([0, -1, 2, 1]))


def test_indefinite_covariance():
    from synthaug import metrics

    mu = np.zeros(3)
    good = np.eye(3)
    bad = np.diag([1.0, 1.0, -0.5])
    with pytest.raises(metrics.IndefiniteCovarianceError, match="sigma2") as e:
        metrics.frechet_distance(mu, good, mu, bad)
    assert "-0.5" in str(e.value) and "\n" not in str(e.value)


def test_non_finite_statistics():
    from synthaug import metrics

    mu = np.zeros(3)
    with pytest.raises(ValueError, match="mu1"):
        metrics.frechet_distance(np.array([0.0, np.nan, 0.0]), np.eye(3), mu, np.eye(3))
