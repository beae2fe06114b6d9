"""The README's usage example runs as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README has no python example"
    namespace: dict = {}
    exec(compile(block.group(1), str(README), "exec"), namespace)
    assert namespace["emb"].shape == (10, 8, 64)


def test_readme_states_the_xxl_count():
    from synthaug.text_encoder import count_params, get_config

    n = count_params(get_config("xxl"))
    assert f"{n:,}" in README.read_text()
