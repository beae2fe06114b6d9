"""Test configuration: the fake ImageNet layouts as a session fixture."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402
from imagenet_data_fakes import FakeImageNet  # noqa: E402


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory) -> FakeImageNet:
    return FakeImageNet(tmp_path_factory.mktemp("fake"))
