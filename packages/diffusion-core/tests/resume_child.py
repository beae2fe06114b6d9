"""Child process of the resume test: train a micro U-Net, optionally block after a step.

    python resume_child.py CKPT_DIR NUM_STEPS [BLOCK_AFTER]

With BLOCK_AFTER, once the checkpoint of that step is complete on disk it prints
``READY <step>`` and sleeps until it is killed.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from diffusion_core_testutil import resume_setup  # noqa: E402

from synthaug.diffusion_core import train  # noqa: E402


def main() -> None:
    ckpt_dir, num_steps = sys.argv[1], int(sys.argv[2])
    block_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    model, config, data = resume_setup()

    def callback(step, metrics, state):
        if step == block_after:
            while not os.path.isdir(os.path.join(ckpt_dir, str(step))):
                time.sleep(0.05)
            print(f"READY {step}", flush=True)
            while True:
                time.sleep(60)

    train(
        model,
        config,
        data,
        num_steps=num_steps,
        checkpoint_dir=ckpt_dir,
        save_every=5,
        keep=2,
        callback=callback,
        log_every=1,
    )


if __name__ == "__main__":
    main()
