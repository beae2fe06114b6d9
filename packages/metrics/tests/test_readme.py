"""The README's first python block runs as written."""

import pathlib
import re


def test_readme_example_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["fid"] > 0.0
    assert 1.0 <= scope["is_mean"] <= 1008.0
