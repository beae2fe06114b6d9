"""Benchmarks of synthaug.metrics against pytorch-fid, measured in the same process.

* Fréchet distance at d = 2048 (quick: 512): ``frechet_distance`` (Cholesky, ``dsygst`` and
  eigenvalues of one symmetric matrix) against ``pytorch_fid.fid_score.calculate_frechet_distance``
  (``scipy.linalg.sqrtm``), on the same full-rank covariances; the two values must agree to 1e-6
  relative. Both run with one BLAS thread, the peer's fastest setting on this shared 2-core
  machine (with two OpenBLAS threads under load sqrtm is 10x slower); a rank-deficient case
  (n = d/2 samples, where sqrtm is unreliable) is checked against the exact nuclear-norm value.
* FID Inception feature extraction, images/s: ``make_feature_fn`` (JAX, NHWC, batch norm folded)
  against pytorch-fid's ``InceptionV3`` with the same random weights, on the same 299x299 images
  and the same batch (quick: 4, full: 32); the peer at torch's default threads, and for
  reference also at one thread.
* Peak memory of ``RunningStats`` over N feature vectors (d = 2048) at two counts: it must not
  grow with N (O(d²)).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from harness import Result, block, measure

SEED = 0


def _covariances(d: int, seed: int = SEED):
    rs = np.random.RandomState(seed)
    n = 2 * d
    x1 = rs.standard_normal((n, d)) @ (rs.standard_normal((d, d)) / np.sqrt(d))
    x2 = 1.1 * rs.standard_normal((n, d)) + 0.3 * x1 + 0.05
    return x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False)


def _rank_deficient_check(d: int, seed: int = SEED) -> tuple[float, float]:
    """Relative error of ``frechet_distance`` on covariances of n = d/2 samples, and seconds."""
    from synthaug.metrics import frechet_distance

    rs = np.random.RandomState(seed + 1)
    n = d // 2
    x1 = rs.standard_normal((n, d))
    x2 = 1.2 * rs.standard_normal((n, d)) + 0.5 * x1 + 0.1
    a = (x1 - x1.mean(0)).T / np.sqrt(n - 1)
    b = (x2 - x2.mean(0)).T / np.sqrt(n - 1)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = a @ a.T, b @ b.T
    # Exact: tr((A Aᵀ B Bᵀ)^½) is the nuclear norm of Aᵀ B (singular values of an n x n matrix).
    tr = np.linalg.svd(a.T @ b, compute_uv=False).sum()
    want = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr)
    t0 = time.perf_counter()
    got = frechet_distance(mu1, s1, mu2, s2)
    return abs(got - want) / abs(want), time.perf_counter() - t0


def bench_frechet(quick: bool) -> Result:
    from pytorch_fid.fid_score import calculate_frechet_distance
    from threadpoolctl import threadpool_limits

    from synthaug.metrics import frechet_distance

    d = 512 if quick else 2048
    mu1, s1, mu2, s2 = _covariances(d)

    def peer_fn():
        with threadpool_limits(limits=1, user_api="blas"):
            return float(calculate_frechet_distance(mu1, s1, mu2, s2))

    ours_value = frechet_distance(mu1, s1, mu2, s2)
    peer_value = peer_fn()
    rel = abs(ours_value - peer_value) / abs(peer_value)
    deficient_rel, deficient_s = _rank_deficient_check(d)
    ours = measure(lambda: frechet_distance(mu1, s1, mu2, s2), warmup=1, runs=5)
    # sqrtm takes a minute or more at d = 2048 on a small CPU: no warm-up runs for the peer.
    peer = measure(peer_fn, warmup=0, runs=5)
    return Result(
        name=f"frechet_distance_d{d}",
        metric="seconds per call",
        value=ours.median,
        unit="s",
        peer="pytorch-fid calculate_frechet_distance (scipy.linalg.sqrtm), 1 BLAS thread",
        peer_value=peer.median,
        ratio=peer.median / ours.median,
        target=10.0,
        timing=ours,
        peer_timing=peer,
        notes=(
            f"d={d}, full-rank covariances from {2 * d} samples, both with 1 BLAS thread; "
            f"FID ours {ours_value:.10g}, pytorch-fid {peer_value:.10g}, relative difference "
            f"{rel:.2e} ({'within' if rel <= 1e-6 else 'OUTSIDE'} 1e-6); rank-deficient "
            f"(n={d // 2}) vs exact nuclear-norm value: relative difference {deficient_rel:.2e} "
            f"({'within' if deficient_rel <= 1e-6 else 'OUTSIDE'} 1e-6), {deficient_s:.2f} s"
        ),
    )


def _torch_inception(state_dict):
    import pytorch_fid.inception as pfi
    import torch
    import torchvision

    tv = torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, weights=None, init_weights=False
    )
    tsd = {
        k: (torch.from_numpy(state_dict[k]) if k in state_dict else torch.zeros_like(v))
        for k, v in tv.state_dict().items()
    }
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: tsd  # no download: our random weights
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.DEFAULT_BLOCK_INDEX]).eval()
    finally:
        pfi.load_state_dict_from_url = original
    return model


def bench_inception(quick: bool) -> Result:
    import torch

    from synthaug.metrics import (
        fid_inception_torch_shapes,
        load_fid_inception,
        make_feature_fn,
        random_state_dict,
    )

    batch = 4 if quick else 32
    state_dict = random_state_dict(fid_inception_torch_shapes(), seed=SEED)
    model = _torch_inception(state_dict)
    fn = make_feature_fn(load_fid_inception(state_dict), batch_size=batch)
    images = np.random.RandomState(SEED).randint(0, 256, (batch, 299, 299, 3)).astype(np.uint8)
    default_threads = torch.get_num_threads()

    # Both include the uint8 -> [0, 1] conversion and the resize step (299 -> 299: an identity
    # interpolation in pytorch-fid, skipped by ours; both exact) and return pool3 on the host.
    def torch_run():
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
            return model(x)[0].squeeze(-1).squeeze(-1).numpy()

    def jax_run():
        return np.asarray(block(fn(images))[0])

    ref = torch_run()
    agree = np.max(np.abs(jax_run() - ref)) / np.max(np.abs(ref))
    ours = measure(jax_run, warmup=1, runs=5)
    peer = measure(torch_run, warmup=1, runs=5)
    torch.set_num_threads(1)
    try:
        peer_1t = measure(torch_run, warmup=1, runs=5)
    finally:
        torch.set_num_threads(default_threads)
    return Result(
        name="fid_inception_features",
        metric="images per second",
        value=batch / ours.median,
        unit="img/s",
        peer=f"pytorch-fid InceptionV3 (torch {torch.__version__}, {default_threads} threads)",
        peer_value=batch / peer.median,
        ratio=peer.median / ours.median,
        target=1.0,
        timing=ours,
        peer_timing=peer,
        notes=(
            f"batch {batch} of 299x299 uint8 images for both, CPU, same random weights; pool3 "
            f"max relative difference {agree:.1e}; torch with 1 thread: "
            f"{batch / peer_1t.median:.3g} img/s (ratio {peer_1t.median / ours.median:.2f})"
        ),
    )


def _stats_peak(count: int, d: int, batch: int) -> tuple[float, float]:
    from synthaug.metrics import RunningStats

    rs = np.random.RandomState(SEED)
    feats = rs.standard_normal((batch, d)).astype(np.float32)
    stats = RunningStats(d)
    tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(count // batch):
        stats.update(feats + np.float32(i % 7))
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.count == count
    return peak / 2**20, seconds


def bench_stats_memory(quick: bool) -> Result:
    d, batch = 2048, 500
    small_n, large_n = (1_000, 3_000) if quick else (5_000, 50_000)
    small, _ = _stats_peak(small_n, d, batch)
    large, seconds = _stats_peak(large_n, d, batch)
    held = large_n * d * 4 / 2**20
    return Result(
        name="running_stats_peak_memory",
        metric=f"peak traced MiB at {large_n} vectors (d={d})",
        value=large,
        unit="MiB",
        peer=f"same at {small_n} vectors",
        peer_value=small,
        ratio=large / small,
        target=1.1,
        lower_is_better=True,
        notes=(
            f"tracemalloc peak over the whole stream, batches of {batch}; {large_n / seconds:.0f} "
            f"vectors/s; holding the float32 features instead would take {held:.0f} MiB"
        ),
    )


def run(quick: bool) -> list[Result]:
    return [bench_frechet(quick), bench_inception(quick), bench_stats_memory(quick)]
