"""Two processes x two CPU devices train, checkpoint, resume and evaluate as one process
with four devices does."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
from jax.sharding import Mesh

from synthaug.classifiers import epoch_permutation, evaluate, fit_stream

from ._tiny import pair_config, toy_data

CHILD = pathlib.Path(__file__).parent / "_multiprocess_child.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(out, stop_at: int) -> list[int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), str(pid), str(port), str(out), str(stop_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for pid in (0, 1)
    ]
    codes = []
    for p in procs:
        log, _ = p.communicate(timeout=600)
        codes.append(p.returncode)
        if p.returncode not in (0, 3):
            raise AssertionError(log[-4000:])
    return codes


def test_two_processes_equal_one_process_with_four_devices(tmp_path):
    # Stopped after step 11 (checkpoints at 4 and 8, saved by both processes together),
    # then resumed from step 8 to the end.
    assert _run_pair(tmp_path, stop_at=11) == [3, 3]
    assert not (tmp_path / "result_0.npz").exists()
    assert _run_pair(tmp_path, stop_at=0) == [0, 0]
    r0, r1 = np.load(tmp_path / "result_0.npz"), np.load(tmp_path / "result_1.npz")

    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    cfg = pair_config()
    images, labels = toy_data(64)
    ev_x, ev_y = toy_data(37, seed=5)

    def epoch_batches(epoch):
        perm = epoch_permutation(3, epoch, 64)
        for i in range(8):
            idx = perm[i * 8 : (i + 1) * 8]
            yield {"images": images[idx], "labels": labels[idx]}

    def eval_batches():
        yield {"images": ev_x, "labels": ev_y}

    state, history = fit_stream(
        cfg,
        epoch_batches,
        steps_per_epoch=8,
        rng=jax.random.key(0),
        eval_batches=eval_batches,
        mesh=mesh,
    )
    ev = evaluate(cfg, state, ev_x, ev_y, batch_size=8, mesh=mesh)
    for r in (r0, r1):
        assert int(r["step"]) == 16
        # The resumed run's history holds the epoch finished before the stop and the last.
        np.testing.assert_allclose(r["losses"], [h["train_loss"] for h in history], rtol=1e-5)
        assert int(r["eval_count"]) == int(r["count"]) == 37  # 7 + 30 examples, each once
        assert round(float(r["eval_top1"]) * 37) == round(history[-1]["eval_top1"] * 37)
        assert round(float(r["top1"]) * 37) == round(ev["top1"] * 37)
        assert round(float(r["top5"]) * 37) == round(ev["top5"] * 37)
        # Parameters and statistics to 1e-5 relative (in norm, over all of them): the
        # cross-process reductions sum in another order, nothing else differs.
        leaves = jax.tree_util.tree_leaves_with_path(
            jax.device_get((state.params, state.batch_stats))
        )
        ours = [np.asarray(v) for _, v in leaves]
        theirs = [r[jax.tree_util.keystr(p)] for p, _ in leaves]
        diff = sum(float(np.sum((a - b) ** 2)) for a, b in zip(ours, theirs, strict=True))
        rel = (diff / sum(float(np.sum(a**2)) for a in ours)) ** 0.5
        assert rel < 1e-5, rel
