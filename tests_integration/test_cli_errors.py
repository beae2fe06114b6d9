"""Bad input to the ``synthaug`` command line: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import pytest

# The four cases of the issue run as real subprocesses; the others in-process (same code path,
# without paying a TensorFlow import per case).
SUBPROCESS = {
    "unknown config key",
    "missing checkpoint",
    "missing data directory",
    "unknown class name",
}

CASES = {
    "unknown config key": (
        [
            "sample",
            "--config",
            "paper/sample_final",
            "--config.per_klass=3",
            "--config.out_dir={tmp}/out",
        ],
        "per_klass",
    ),
    "missing checkpoint": (
        [
            "sample",
            "--config",
            "paper/sample_final",
            "--config.dataset=digits",
            "--config.base.checkpoint={tmp}/no_such_checkpoint",
            "--config.sr1.checkpoint={tmp}/no_such_checkpoint",
            "--config.out_dir={tmp}/out",
        ],
        "no_such_checkpoint",
    ),
    "missing data directory": (
        [
            "finetune",
            "--config",
            "paper/base64_finetune",
            "--config.data.data_dir={tmp}/no_such_data",
            "--config.workdir={tmp}/out",
        ],
        "no_such_data",
    ),
    "unknown class name": (
        [
            "sample",
            "--config",
            "paper/sample_final",
            "--config.dataset=digits",
            "--config.classes=zero,eleven",
            "--config.out_dir={tmp}/out",
        ],
        "eleven",
    ),
    "unknown imagenet class": (
        [
            "sample",
            "--config",
            "paper/sample_final",
            "--config.classes=tench,unicorn",
            "--config.out_dir={tmp}/out",
        ],
        "unicorn",
    ),
    "missing synthetic data": (
        [
            "train-classifier",
            "--config",
            "paper/resnet50:synthetic",
            "--config.data.synthetic_dir={tmp}/no_such_shards",
            "--config.workdir={tmp}/out",
        ],
        "no_such_shards",
    ),
    "missing classifier": (
        [
            "evaluate",
            "--config",
            "paper/evaluate:cas",
            "--config.real.source=digits",
            "--config.classifier_dir={tmp}/no_such_classifier",
            "--config.workdir={tmp}/out",
        ],
        "no_such_classifier",
    ),
    "wrong value type": (
        ["demo", "--quick", "--config.sample.per_class=lots", "--out", "{tmp}/out"],
        "sample.per_class",
    ),
    "unknown config file": (["train-classifier", "--config", "paper/resnet9000"], "resnet9000"),
}


def _check(code: int, stderr: str, needle: str, tmp_path) -> None:
    assert code == 2, (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("synthaug: error:")
    assert needle in lines[0]
    assert list(tmp_path.iterdir()) == [], "a failed command left output behind"


@pytest.mark.parametrize("case", sorted(SUBPROCESS))
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, case):
    argv, needle = CASES[case]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = cli.run(*argv, cwd=tmp_path, timeout=300)
    _check(proc.returncode, proc.stderr, needle, tmp_path)


@pytest.mark.parametrize("case", sorted(set(CASES) - SUBPROCESS))
def test_bad_input_in_process(capsys, monkeypatch, tmp_path, case):
    from synthaug.pipeline.cli import main

    argv, needle = CASES[case]
    monkeypatch.chdir(tmp_path)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    _check(code, capsys.readouterr().err, needle, tmp_path)
