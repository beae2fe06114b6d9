"""Test setup: 4 simulated CPU devices, quick XLA compiles, a per-session compilation cache.

The suite's time is almost all XLA compilation of tiny networks, which is dominated by the
number of HLO ops, not by tensor sizes. The flags below trade run-time speed (irrelevant at
these sizes) for compile speed: no LLVM optimisation, the classic elemental fusion emitter
(about 2.5x faster to compile than the MLIR fusion emitters), no XNNPACK rewrites and one
codegen partition (the CPU is shared by the test workers anyway).
"""

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_use_xnnpack=false --xla_cpu_parallel_codegen_split_count=1",
)
# Identical computations compiled again (new jit objects, the resume subprocess) load the
# executable from this cache instead of recompiling.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="dc_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402
from diffusion_core_testutil import Net, Setup, micro_base, micro_sr  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base():
    return Net("tiny_base", 4)


@pytest.fixture(scope="session")
def tiny_sr():
    return Net("tiny_sr", 2)


@pytest.fixture(scope="session")
def micro():
    return Setup(micro_base(), 4)


@pytest.fixture(scope="session")
def micro_sr_setup():
    return Setup(micro_sr(), 2)
