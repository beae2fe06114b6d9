"""One process of the 2-process test in test_parallel.py (run as a script).

    python _multiprocess_child.py PROCESS_ID PORT OUT_DIR STOP_AT

Each process has 2 simulated CPU devices; together they form a 4-device mesh. Each streams
its half of every global batch of the micro ResNet (checkpoints in OUT_DIR/ckpt, written
collectively) and evaluates its own, unequal share of an eval set; STOP_AT > 0 stops the
run after that step (a later call resumes from the checkpoints).
"""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_use_xnnpack=false --xla_cpu_parallel_codegen_split_count=1"
)
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _tiny import pair_config, toy_data  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from synthaug.classifiers import (  # noqa: E402
    epoch_permutation,
    evaluate,
    fit_stream,
    local_batch_size,
)

EVAL_SPLIT = 7  # process 0 evaluates examples [0, 7), process 1 the rest


def main() -> None:
    pid, port, out, stop_at = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    cfg = pair_config()
    images, labels = toy_data(64)
    ev_x, ev_y = toy_data(37, seed=5)
    lbs = local_batch_size(cfg.batch_size, mesh)
    assert lbs == 4

    def epoch_batches(epoch):
        perm = epoch_permutation(3, epoch, 64)
        for i in range(8):
            idx = perm[i * 8 : (i + 1) * 8][pid * lbs : (pid + 1) * lbs]
            yield {"images": images[idx], "labels": labels[idx]}

    mine = slice(0, EVAL_SPLIT) if pid == 0 else slice(EVAL_SPLIT, None)

    def eval_batches():
        yield {"images": ev_x[mine], "labels": ev_y[mine]}

    def step_fn(step, metrics):
        if step == stop_at:
            raise SystemExit(3)

    state, history = fit_stream(
        cfg,
        epoch_batches,
        steps_per_epoch=8,
        rng=jax.random.key(0),
        eval_batches=eval_batches,
        checkpoint_dir=os.path.join(out, "ckpt"),
        mesh=mesh,
        step_fn=step_fn,
    )
    ev = evaluate(cfg, state, ev_x[mine], ev_y[mine], batch_size=8, mesh=mesh)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get((state.params, state.batch_stats)))
    np.savez(
        os.path.join(out, f"result_{pid}.npz"),
        losses=np.asarray([h["train_loss"] for h in history]),
        eval_top1=history[-1]["eval_top1"],
        eval_count=history[-1]["eval_count"],
        top1=ev["top1"],
        top5=ev["top5"],
        count=ev["count"],
        step=int(state.step),
        **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves},
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
