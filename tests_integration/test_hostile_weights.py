"""A crafted weights file passed on the command line is refused before its payload runs."""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile

import numpy as np
import pytest

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_pth(path, marker, layout: str) -> None:
    evil = pickle.dumps({"Conv2d_1a_3x3.conv.weight": _Payload(marker)}, protocol=2)
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", evil)
            zf.writestr("archive/byteorder", "little")
    else:  # the legacy layout, payload where the magic number belongs
        path.write_bytes(evil + pickle.dumps(1001, protocol=2))


def _listing(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_evaluate_refuses_a_hostile_inception_checkpoint(capsys, monkeypatch, tmp_path, layout):
    from synthaug.pipeline.cli import main

    marker = tmp_path / "payload_ran"
    (tmp_path / "shards").mkdir()
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    evil = tmp_path / "pt_inception.pth"
    _hostile_pth(evil, marker, layout)
    before = _listing(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "evaluate",
            "--config",
            "paper/evaluate:val256",
            f"--config.samples_dir={tmp_path / 'shards'}",
            f"--config.reference={tmp_path / 'ref.npz'}",
            f"--config.inception_checkpoint={evil}",
            f"--config.workdir={tmp_path / 'out'}",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"synthaug: error: {evil}: refusing to load the global ")
    assert "system" in err[0]
    assert not marker.exists(), "the payload ran"
    assert _listing(tmp_path) == before, "a refused run changed the directory"
