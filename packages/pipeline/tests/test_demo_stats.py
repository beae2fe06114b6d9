"""The demo's statistics: seeds summarised as mean ± sd, paired t-intervals, nested
class-balanced synthetic subsets, the paper-claims verdicts and the error-bar plots."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def test_paired_interval_matches_scipy_paired_t_test():
    from scipy import stats

    from synthaug.pipeline.demo import paired_interval

    a = np.array([0.80, 0.82, 0.78, 0.85, 0.81])
    b = np.array([0.84, 0.83, 0.82, 0.88, 0.86])
    got = paired_interval(a, b)
    ref = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert got["mean"] == pytest.approx(np.mean(b - a))
    assert got["low"] == pytest.approx(ref.low) and got["high"] == pytest.approx(ref.high)
    assert got["n"] == 5 and got["excludes_zero"]
    # Student's t table: t(0.975, 4) = 2.776; half width = t * sd / sqrt(n).
    half = 2.7764451 * np.std(b - a, ddof=1) / np.sqrt(5)
    assert got["high"] - got["mean"] == pytest.approx(half, rel=1e-6)


def test_paired_interval_includes_zero_for_noise_and_is_unbounded_for_one_seed():
    from synthaug.pipeline.demo import paired_interval

    d = paired_interval([0.5, 0.6, 0.5, 0.6], [0.6, 0.5, 0.6, 0.5])
    assert d["low"] < 0 < d["high"] and not d["excludes_zero"]
    one = paired_interval([0.5], [0.7])
    assert one["mean"] == pytest.approx(0.2) and one["low"] == -np.inf and one["high"] == np.inf
    assert not one["excludes_zero"]
    worse = paired_interval([0.9, 0.91, 0.92], [0.8, 0.8, 0.83])
    assert worse["excludes_zero"] and worse["high"] < 0
    with pytest.raises(ValueError, match="equal-length"):
        paired_interval([0.1, 0.2], [0.1, 0.2, 0.3])


def test_mean_std_is_sample_standard_deviation():
    from synthaug.pipeline.demo import mean_std

    assert mean_std([0.9, 0.92, 0.94]) == pytest.approx({"mean": 0.92, "std": 0.02})
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0}


def test_balanced_prefix_is_nested_and_class_balanced():
    from synthaug.pipeline.demo import balanced_prefix

    labels = np.repeat(np.arange(10), 8)[np.random.default_rng(0).permutation(80)]
    sets = {k: balanced_prefix(labels, k) for k in (0.5, 1, 2, 8)}
    assert len(sets[0.5]) == 5 and len(np.unique(labels[sets[0.5]])) == 5
    for k in (1, 2, 8):
        assert np.bincount(labels[sets[k]], minlength=10).tolist() == [k] * 10
    assert set(sets[0.5]) <= set(sets[1]) <= set(sets[2]) <= set(sets[8])
    with pytest.raises(ValueError, match="class 0 has 8 examples, 9 requested"):
        balanced_prefix(labels, 9)


def _summary(real, mixed, cas=(0.5, 0.55, 0.6), full=(0.95, 0.96, 0.97)):
    from synthaug.pipeline.demo import mean_std, paired_interval

    def row(v):
        ms = mean_std(v)
        return {"top1": ms["mean"], "top1_std": ms["std"]}

    gain = paired_interval(real, mixed)
    return {
        "accuracy": {
            "real": row(real),
            "mixed": row(mixed),
            "synthetic": row(cas),
            "real_full": row(full),
        },
        "mixed_minus_real_top1": gain,
        "size_sweep": [
            {"top1_mean_std": mean_std(real), "gain_vs_real": None},
            {"top1_mean_std": mean_std(mixed), "gain_vs_real": gain},
        ],
        "guidance_sweep": [
            {"guidance": 1.0, "cas_top1_mean_std": {"mean": 0.40, "std": 0.01}},
            {"guidance": 1.5, "cas_top1_mean_std": {"mean": 0.60, "std": 0.01}},
            {"guidance": 3.0, "cas_top1_mean_std": {"mean": 0.50, "std": 0.01}},
        ],
    }


def test_claims_follow_the_intervals():
    from synthaug.pipeline.demo import claims

    gain = claims(_summary([0.80, 0.82, 0.81], [0.85, 0.88, 0.86]))
    verdicts = {c[0].split(" (")[0]: c[1] for c in gain}
    first = next(iter(verdicts.values()))
    assert first == "reproduced"
    assert any(v == "reproduced" for k, v in verdicts.items() if k.startswith("Guidance"))
    assert "out of scope" in gain[-1][1]
    noise = claims(_summary([0.80, 0.85, 0.81], [0.84, 0.80, 0.83]))
    assert noise[0][1].startswith("not shown") and "CI" in noise[0][2]
    hurt = claims(_summary([0.90, 0.91, 0.92], [0.80, 0.80, 0.83]))
    assert hurt[0][1].startswith("not reproduced")


def test_error_bar_plots_are_pngs(tmp_path):
    from synthaug.pipeline.plots import plot_vs_guidance, plot_vs_size

    p = plot_vs_guidance(
        tmp_path / "g.png",
        [1.0, 1.25, 3.0],
        {"CAS": [(40.0, 2.0), (50.0, 1.0), (45.0, 3.0)], "FD": [3.0, 2.0, 1.0]},
        title="t",
    )
    s = plot_vs_size(
        tmp_path / "s.png",
        [10, 15, 20],
        [80.0, 82.0, 85.0],
        [1.0, 2.0, 1.5],
        title="t",
        reference=95.0,
    )
    for path in (p, s):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with pytest.raises(ValueError, match="differ in length"):
        plot_vs_size(tmp_path / "x.png", [1, 2], [1.0], [1.0], title="t")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="value, error"):
        plot_vs_guidance(tmp_path / "y.png", [1.0], {"CAS": [(1.0, 2.0, 3.0)]}, title="t")


def test_resize_images_block_mean_and_bilinear():
    from synthaug.pipeline.demo import resize_images

    x = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    got = resize_images(x, 2)
    assert got.dtype == np.uint8 and got.shape == (2, 2, 2, 1)
    # Top-left block of the first image: 0, 1, 4, 5 -> 2.5, rounded half to even -> 2.
    assert got[0, 0, 0, 0] == 2 and got[0, 1, 1, 0] == np.round((10 + 11 + 14 + 15) / 4)
    assert resize_images(x, 4) is x
    odd = resize_images(np.full((1, 6, 6, 3), 200, np.uint8), 4)
    assert odd.shape == (1, 4, 4, 3) and (odd == 200).all()
