"""Markdown tables, figures, the metric writer and the atomic writes behind them."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from synthaug.pipeline import io, plots
from synthaug.pipeline.errors import MissingPathError
from synthaug.pipeline.report import MarkdownReport, format_value, markdown_table
from synthaug.pipeline.writer import MetricWriter, StageTimer, read_metrics


def test_markdown_table():
    t = markdown_table(["data", "top-1"], [["real", 0.91234567], ["synthetic", None]])
    lines = t.strip().split("\n")
    assert lines[0] == "| data | top-1 |"
    assert lines[1] == "|---|---|"
    assert lines[2] == "| real | 0.9123 |"
    assert lines[3] == "| synthetic | – |"
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a"], [[1, 2]])
    assert format_value(float("nan")) == "nan"


def test_report_figure_paths_are_relative(tmp_path):
    img = tmp_path / "figs" / "a.png"
    plots.save_grid_png(img, np.zeros((4, 8, 8, 1), np.uint8), cols=2)
    rep = MarkdownReport(tmp_path / "report.md", "T")
    rep.table(["k", "v"], [["x", 1]])
    rep.figure(img, "a grid")
    path = rep.write()
    text = path.read_text()
    assert text.startswith("# T\n")
    assert "![a grid](figs/a.png)" in text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_image_grid_layout():
    imgs = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    g = plots.image_grid(imgs, cols=3, pad=1)
    assert g.shape == (2 * 3 + 1, 3 * 4 + 1, 3)
    np.testing.assert_array_equal(g[1:3, 1:4], imgs[0])
    np.testing.assert_array_equal(g[4:6, 5:8], imgs[4])  # second row, second column
    assert (g[4:6, 9:12] == 255).all()  # the sixth cell is empty


def test_grid_png_and_guidance_plot(tmp_path):
    p = plots.save_grid_png(tmp_path / "g.png", np.full((3, 4, 4, 3), 7, np.uint8), cols=3, scale=2)
    im = np.asarray(Image.open(p))
    assert im.shape == ((4 + 2) * 2, (3 * 5 + 1) * 2, 3)
    q = plots.plot_vs_guidance(
        tmp_path / "plot.png", [1.0, 2.0], {"CAS": [0.5, 0.6], "FD": [3.0, 2.0]}, title="t"
    )
    assert Image.open(q).size[0] > 100


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with io.atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("x")
    assert (tmp_path / "d" / "f").read_text() == "x"


def test_require_paths(tmp_path):
    with pytest.raises(MissingPathError, match="checkpoint directory"):
        io.require_dir(tmp_path / "missing", "checkpoint directory")
    with pytest.raises(FileNotFoundError):
        io.require_file(tmp_path / "missing.npz", "reference statistics")
    assert io.require_dir(tmp_path, "x") == tmp_path


def test_metric_writer_json_and_tensorboard(tmp_path):
    w = MetricWriter(tmp_path)
    w.scalars(1, {"loss": 0.5})
    w.scalars(2, {"loss": 0.25, "bad": float("nan")})
    w.summary(top1=0.9)
    w.close()
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["scalars"]["loss"] == {"step": 2, "value": 0.25}
    assert data["scalars"]["bad"]["value"] is None
    assert read_metrics(tmp_path)["top1"] == 0.9
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events
    import tensorflow as tf

    seen = {}
    events = list(tf.compat.v1.train.summary_iterator(str(events[0])))
    assert events[0].file_version == "brain.Event:2"
    for e in events[1:]:
        for v in e.summary.value:
            # read back by TensorFlow's own event reader: float scalars
            assert v.WhichOneof("value") == "simple_value"
            seen.setdefault(v.tag, []).append((e.step, v.simple_value))
    assert seen["loss"] == [(1, 0.5), (2, 0.25)]
    assert math.isnan(seen["bad"][0][1])


def test_metric_writer_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from synthaug.pipeline.writer import MetricWriter; "
        f"w = MetricWriter({str(tmp_path)!r}); w.scalars(3, {{'loss': 1.0}}); w.close(); "
        "assert 'tensorflow' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1


def test_stage_timer():
    t = StageTimer()
    with t("a"):
        sum(range(1000))
    with t("a"):
        pass
    assert set(t.times) == {"a"} and t.times["a"] > 0
