import json
import os
import pathlib

import numpy as np
import pytest

# 4 simulated CPU devices for the sharded feature tests (set before JAX starts).
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=4".strip()

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


@pytest.fixture(scope="session")
def golden():
    """Outputs of pytorch-fid's FID Inception (tools/fixtures/make_metrics_inception.py)."""
    with np.load(FIXTURES / "fid_inception_golden.npz") as f:
        data = {k: f[k] for k in f.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data
