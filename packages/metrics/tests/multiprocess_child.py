"""One process of the 2-process test in test_distributed.py (run as a script).

    python multiprocess_child.py PROCESS_ID PORT OUT_DIR

Each process has 2 simulated CPU devices; together they build a 4-device mesh, compute the FID
features of their own share of the images (process 0: 7 images, process 1: 4) and the merged
statistics, and write them to OUT_DIR/stats_<id>.npz.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from synthaug.metrics import distributed as dist  # noqa: E402
from synthaug.metrics import (  # noqa: E402
    fid_inception_torch_shapes,
    load_fid_inception,
    random_state_dict,
)


def main() -> None:
    pid, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    assert jax.process_count() == 2 and len(jax.devices()) == 4
    params = load_fid_inception(random_state_dict(fid_inception_torch_shapes(), seed=11))
    images = np.random.RandomState(0).randint(0, 256, (11, 24, 20, 3)).astype(np.uint8)
    mine = images[:7] if pid == 0 else images[7:]
    mesh = Mesh(np.array(jax.devices()).reshape(4), ("data",))
    fn = dist.make_sharded_feature_fn(params, mesh, batch_size=8, image_shape=(24, 20))
    stats, logits = dist.streaming_statistics([mine], fn, keep_logits=True)
    np.savez(
        os.path.join(out, f"stats_{pid}.npz"),
        count=stats.count,
        mean=stats.mean,
        cov=stats.cov,
        logits=logits,
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
