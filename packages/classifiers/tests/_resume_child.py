"""Child process of test_checkpoint: trains the micro model with checkpoints.

python _resume_child.py CKPT_DIR OUT.npz SLEEP_PER_STEP
"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _tiny import micro_config, toy_data  # noqa: E402

from synthaug.classifiers import fit  # noqa: E402


def main():
    ckpt_dir, out, sleep = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = micro_config(epochs=3, checkpoint_every_steps=2)
    images, labels = toy_data(64)

    def step_fn(step, metrics):
        print(f"step {step}", flush=True)
        time.sleep(sleep)

    state, history = fit(
        cfg, images, labels, rng=jax.random.PRNGKey(0), checkpoint_dir=ckpt_dir, step_fn=step_fn
    )
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
    np.savez(out, **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})
    print("done", flush=True)


if __name__ == "__main__":
    main()
