"""Test setup: 4 simulated CPU devices (the sharded checkpoint tests)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
