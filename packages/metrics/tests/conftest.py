import json
import pathlib

import numpy as np
import pytest

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
