"""Atomic writes: nothing half-written on error, umask-following modes."""

import json
import os
import stat

import numpy as np
import pytest

from synthaug import io as sio


def test_write_json_roundtrip_and_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = sio.write_json(tmp_path / "a" / "m.json", {"x": np.arange(3), "p": tmp_path})
    finally:
        os.umask(old)
    assert json.loads(p.read_text()) == {"x": [0, 1, 2], "p": str(tmp_path)}
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with sio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "old").write_text("1")
    with pytest.raises(ValueError):
        with sio.atomic_dir(target) as tmp:
            (tmp / "new").write_text("2")
            raise ValueError("x")
    assert [f.name for f in target.iterdir()] == ["old"]
    with sio.atomic_dir(target) as tmp:
        (tmp / "new").write_text("2")
    assert [f.name for f in target.iterdir()] == ["new"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["d"]
