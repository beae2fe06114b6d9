import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["y"].shape == (namespace["global_batch"], 4)
    assert namespace["result"].shape == (namespace["global_batch"], 4)


def test_readme_documents_the_pod_run():
    text = README.read_text()
    assert "## Running on a v4-256 pod" in text
    for topic in ("**Mesh.**", "**Per-host batch.**", "**Per-host data sharding.**",
                  "**Checkpoints on GCS.**"):  # fmt: skip
        assert topic in text
