"""verify_shards: a reopened synthetic directory's shards agree with their sidecars and manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthaug import imagenet_data as data


def _write(out, n, shard_size=4):
    w = data.SyntheticShardWriter(out, shard_size, metadata={"num_classes": 3})
    images = np.zeros((n, 4, 4, 3), np.uint8)
    w.write(images, np.arange(n) % 3)
    return w


def test_complete_and_unfinished_directories(tmp_path):
    out = tmp_path / "a"
    w = _write(out, 10)
    assert data.verify_shards(out) == 8  # two complete shards; two examples buffered
    w.close()
    assert data.verify_shards(out) == 10
    assert data.verify_shards(tmp_path / "empty") == 0


def test_each_disagreement_names_the_shard(tmp_path):
    out = tmp_path / "a"
    _write(out, 12).close()
    shard = out / "synthetic-00001.tfrecord"
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="synthetic-00001.tfrecord"):
        data.verify_shards(out)
    shard.write_bytes(raw)
    side = out / "synthetic-00002.tfrecord.json"
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "first_index": 4}))
    with pytest.raises(
        ValueError, match="synthetic-00002.tfrecord: its sidecar starts at example 4"
    ):
        data.verify_shards(out)
    side.write_text(json.dumps({**info, "label_counts": {"0": 4}}))
    with pytest.raises(ValueError, match="labels differ"):
        data.verify_shards(out)
    side.write_text(json.dumps(info))
    # A shard taken from another position: its example indices do not continue the set.
    (out / "synthetic-00002.tfrecord").write_bytes((out / "synthetic-00000.tfrecord").read_bytes())
    with pytest.raises(ValueError, match="record 0 has example index 0, expected 8"):
        data.verify_shards(out)


def test_manifest_must_list_the_shards_found(tmp_path):
    out = tmp_path / "a"
    _write(out, 8).close()
    m = json.loads((out / "manifest.json").read_text())
    m["shards"][1]["count"] = 3
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="lists shard synthetic-00001.tfrecord with 3"):
        data.verify_shards(out)
