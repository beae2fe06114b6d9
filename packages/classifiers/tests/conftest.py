"""Test setup (before jax is imported): four simulated CPU devices for the data-parallel
tests, and XLA flags for quick compiles.

The suite's time is almost all XLA compiling small networks; the flags trade run-time speed
(irrelevant at these sizes) for compile speed: no LLVM optimisation, the classic elemental
fusion emitter, no XNNPACK rewrites, one codegen partition.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_use_xnnpack=false --xla_cpu_parallel_codegen_split_count=1",
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
