import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def test_readme_parameter_counts_are_current():
    from synthaug.diffusion_core import get_preset, param_count

    text = README.read_text()
    for name in ("tiny_base", "tiny_sr"):
        assert f"{param_count(get_preset(name)):,}" in text, name
