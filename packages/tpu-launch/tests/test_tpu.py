"""The `tpu` subcommand: gcloud command lines (dry run) and the order of execution."""

import shlex
import stat
import sys

import pytest

from synthaug.tpu_launch import TpuSlice, plan_tpu_run, run_steps
from synthaug.tpu_launch.cli import main

BASE = [
    "tpu",
    "--name",
    "synthaug-pod",
    "--zone",
    "us-central2-b",
    "--project",
    "my-proj",
    "--accelerator-type",
    "v4-256",
    "--version",
    "tpu-ubuntu2204-base",
]


def _dry_run(capsys, *extra):
    assert main([*BASE, *extra]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    comments = [ln for ln in lines if ln.startswith("# ")]
    commands = [shlex.split(ln) for ln in lines if not ln.startswith("#")]
    assert len(comments) == len(commands)
    return comments, commands


def _project(tmp_path):
    for name in ("tpu-launch", "pipeline"):
        (tmp_path / "packages" / name).mkdir(parents=True)
        (tmp_path / "packages" / name / "pyproject.toml").write_text("[project]\n")
    return tmp_path


def test_dry_run_prints_create_copy_install_run_delete(capsys, tmp_path):
    repo = _project(tmp_path)
    comments, cmds = _dry_run(
        capsys, "--dry-run", "--spot", "--copy", str(repo), "--env", "SEED=1 2",
        "--", "synthaug", "train", "--config", "paper/resnet50.py", "--workdir", "gs://b/run 1",
    )  # fmt: skip
    assert [c[:5] for c in cmds] == [["gcloud", "compute", "tpus", "tpu-vm", v] for v in
                                     ("create", "scp", "ssh", "ssh", "delete")]  # fmt: skip
    create, scp, install, run, delete = cmds
    loc = ["--zone=us-central2-b", "--project=my-proj"]
    assert create == [
        "gcloud", "compute", "tpus", "tpu-vm", "create", "synthaug-pod", *loc,
        "--accelerator-type=v4-256", "--version=tpu-ubuntu2204-base", "--spot",
    ]  # fmt: skip
    assert scp == [
        "gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", str(repo),
        "synthaug-pod:synthaug", "--worker=all", *loc,
    ]  # fmt: skip
    assert install[5:9] == ["synthaug-pod", "--worker=all", *loc]
    remote_install = install[9].removeprefix("--command=")
    assert shlex.split(remote_install) == [
        "python3", "-m", "pip", "install", "--upgrade", "jax[tpu]",
        "./synthaug/packages/pipeline", "./synthaug/packages/tpu-launch",
    ]  # fmt: skip
    assert run[5:9] == ["synthaug-pod", "--worker=all", *loc]
    remote = shlex.split(run[9].removeprefix("--command="))
    assert remote == [
        "cd", "synthaug", "&&", "export", "PATH=$HOME/.local/bin:$PATH", "&&",
        "export", "SEED=1 2", "&&", "synthaug", "train",
        "--config", "paper/resnet50.py", "--workdir", "gs://b/run 1",
    ]  # fmt: skip
    assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "synthaug-pod", *loc,
                      "--quiet"]  # fmt: skip
    assert comments[0] == "# create the TPU slice" and comments[-1] == "# delete the TPU slice"


def test_dry_run_options(capsys):
    _, cmds = _dry_run(
        capsys, "--dry-run", "--skip-create", "--keep", "--pip", "tensorflow-cpu>=2.16",
        "--setup", "sudo apt-get install -y htop", "--gcloud", "/opt/gcloud/bin/gcloud",
        "--", "python3", "-c", "import jax; print(jax.device_count())",
    )  # fmt: skip
    assert [c[4] for c in cmds] == ["ssh", "ssh", "ssh"]
    assert all(c[0] == "/opt/gcloud/bin/gcloud" for c in cmds)
    assert cmds[0][-1] == "--command=python3 -m pip install --upgrade 'tensorflow-cpu>=2.16'"
    assert cmds[1][-1] == "--command=sudo apt-get install -y htop"
    assert shlex.split(cmds[2][-1].removeprefix("--command=")) == [
        "export", "PATH=$HOME/.local/bin:$PATH", "&&", "python3", "-c", "import jax; print(jax.device_count())",
    ]  # fmt: skip


def test_tpu_errors_are_one_line(capsys, tmp_path):
    assert main([*BASE, "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "synthaug-launch: error: the command to run on the TPU workers is empty"
    )
    assert main([*BASE, "--dry-run", "--copy", str(tmp_path / "nope"), "--", "x"]) == 2
    assert "--copy must be an existing directory" in capsys.readouterr().err
    assert main([*BASE, "--dry-run", "--env", "1X=2", "--", "x"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main([*BASE, "--dry-run", "--spot", "--preemptible", "--", "x"]) == 2
    assert "either spot or preemptible" in capsys.readouterr().err
    with pytest.raises(ValueError, match="zone must be a non-empty string"):
        TpuSlice(name="a", zone="", accelerator_type="v4-8")


def _recording_runner(fail_on=None):
    calls = []

    def run(argv):
        calls.append(argv[4])
        return 7 if argv[4] == fail_on else 0

    return calls, run


def test_execution_order_and_cleanup_after_failures(capsys):
    tpu = TpuSlice(name="t", zone="z", accelerator_type="v4-8")
    steps = plan_tpu_run(tpu, ["python3", "train.py"], pip=["x"])
    calls, run = _recording_runner()
    assert run_steps(steps, runner=run) == 0
    assert calls == ["create", "ssh", "ssh", "delete"]
    # The job fails: the slice is still deleted and the job's code is returned.
    calls, run = _recording_runner(fail_on="ssh")
    assert run_steps(steps, runner=run) == 7
    assert calls == ["create", "ssh", "delete"]
    assert "step failed with exit code 7: install on every worker" in capsys.readouterr().out
    # Creation fails: nothing else runs (the name may belong to somebody else's slice).
    calls, run = _recording_runner(fail_on="create")
    assert run_steps(steps, runner=run) == 7
    assert calls == ["create"]


def test_real_path_runs_the_gcloud_program(tmp_path, capsys):
    """The commands really run, with a stand-in `gcloud` that logs its arguments."""
    log = tmp_path / "calls.log"
    gcloud = tmp_path / "gcloud"
    gcloud.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if sys.argv[-1].endswith('&& false') else 0)\n"
    )
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    assert main([*BASE, "--gcloud", str(gcloud), "--", "true"]) == 0
    lines = log.read_text().splitlines()
    assert [ln.split()[3] for ln in lines] == ["create", "ssh", "delete"]
    log.unlink()
    assert main([*BASE, "--gcloud", str(gcloud), "--", "false"]) == 3
    assert [ln.split()[3] for ln in log.read_text().splitlines()] == ["create", "ssh", "delete"]
    assert main([*BASE, "--gcloud", str(tmp_path / "missing"), "--", "true"]) == 127
    assert "cannot run" in capsys.readouterr().out
