"""Test setup: four simulated CPU devices and quick XLA compiles (set before jax is imported).

The suite's time is mostly XLA compiling small networks and sampling loops; the flags trade
run-time speed (irrelevant at these sizes) for compile speed: the classic elemental fusion
emitter, no XNNPACK rewrites, one codegen partition and no expensive LLVM passes.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false --xla_cpu_use_xnnpack=false "
    "--xla_cpu_parallel_codegen_split_count=1",
)
