"""The command line: config errors are one line with exit code 2 and write nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthaug.pipeline import cli
from synthaug.pipeline.errors import ConfigError


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_split_config_args():
    rest, over = cli.split_config_args(
        ["sample", "--config", "paper/sample_final", "--config.per_class=3", "--config.seed", "4"]
    )
    assert rest == ["sample", "--config", "paper/sample_final"]
    assert over == ["per_class=3", "seed=4"]
    # A value never starts with "--": an override without one stays bare (a bool key is set
    # true, any other key is an error naming it) instead of swallowing the next flag.
    rest, over = cli.split_config_args(
        ["sample", "--config.workdir", "--config.per_class=5", "--config.overwrite"]
    )
    assert rest == ["sample"] and over == ["workdir", "per_class=5", "overwrite"]
    rest, over = cli.split_config_args(["finetune", "--config.mesh.data", "-1"])
    assert over == ["mesh.data=-1"]
    for bad in (["sample", "--config."], ["sample", "--config.=3"]):
        with pytest.raises(ConfigError):
            cli.split_config_args(bad)


def test_configs_lists_paper_and_demo(capsys):
    code, out, _ = _run(capsys, "configs")
    assert code == 0
    names = out.split()
    assert "paper/resnet50" in names and "demo/default" in names


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sample", "--config", "paper/sample_final", "--config.per_klass=3"], "per_klass"),
        (["sample", "--config", "paper/sample_final", "--config.base.steps=many"], "base.steps"),
        (["train-classifier", "--config", "paper/nope"], "paper/nope"),
        (["train-classifier", "--config", "paper/resnet50:tiny"], "tiny"),
        (["sample", "--config", "paper/resnet50"], "train-classifier"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_config_is_one_line_exit_2(capsys, tmp_path, argv, needle):
    os.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("synthaug: error:"), err
    assert needle in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from synthaug.pipeline.cli import main; sys.exit(main())",
            "report",
            "--config.nokey=1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "nokey" in proc.stderr


def test_report_subcommand_tables_finished_stages(capsys, tmp_path):
    from synthaug.pipeline.io import write_json

    write_json(
        tmp_path / "run1" / "metrics.json",
        {"train_classifier": {"mode": "mixed", "top1": 0.75, "paper": {"top1": 78.17}}},
    )
    out = tmp_path / "r" / "report.md"
    code, _, err = _run(
        capsys, "report", str(tmp_path / "run1"), "--out", str(out), "--config.title=Runs"
    )
    assert code == 0, err
    text = out.read_text()
    assert text.startswith("# Runs\n")
    assert "| top1 | 0.75 |" in text and "Paper: top1 78.17" in text
    code, _, err = _run(
        capsys, "report", str(tmp_path / "missing"), "--out", str(tmp_path / "x.md")
    )
    assert code == 2 and "metrics summary not found" in err
    assert not (tmp_path / "x.md").exists()
