"""Shared fixtures of the synthaug-text-encoder tests."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "t5_outputs.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def spiece_path(tmp_path_factory) -> pathlib.Path:
    """A small SentencePiece model trained on a few sentences (T5 special ids)."""
    from synthaug.text_encoder import train_tokenizer

    texts = DIGITS + [
        "a photo of a goldfish",
        "a photo of a tench swimming in a lake",
        "the great white shark",
        "a tiger shark near the reef",
        "a hammerhead shark and a tiger",
    ]
    return train_tokenizer(texts, tmp_path_factory.mktemp("spm") / "spiece.model", vocab_size=48)
