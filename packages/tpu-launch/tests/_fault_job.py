"""A 2-process job that fails in process 1 after a collective (run by test_runtime.py).

Usage: python _fault_job.py MODE, MODE one of raise, exit, kill, kill-sleep.
"""

import os
import signal
import sys
import time

from synthaug import tpu_launch as tl

tl.initialize_runtime()

import jax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

mode = sys.argv[1]
multihost_utils.sync_global_devices("first collective")
print(f"process {jax.process_index()}: after the first collective", flush=True)
if jax.process_index() == 1:
    if mode == "raise":
        raise RuntimeError("a bad batch in process 1")
    if mode == "exit":
        raise SystemExit(tl.exit_code(2))
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "kill-sleep":
    # No collective: only the heartbeats can tell that process 1 is gone.
    time.sleep(120)
else:
    multihost_utils.sync_global_devices("second collective")
print("unreachable: the second collective completed", flush=True)
