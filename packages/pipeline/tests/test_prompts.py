"""Class prompts: 1000 distinct ImageNet prompt names, and the template as a config value."""

import numpy as np
import pytest

from synthaug.pipeline.classes import class_names, resolve_classes
from synthaug.pipeline.schemas import get_schema
from synthaug.pipeline.text import class_embeddings


def test_imagenet_prompt_names_are_distinct():
    names = class_names("imagenet")
    assert len(names) == len(set(names)) == 1000
    assert names[134] == "crane (bird)" and names[517] == "crane (machine)"
    assert resolve_classes("imagenet", ["crane (machine)", "tench"]) == [517, 0]


def _text_cfg(template):
    cfg = get_schema("sample")
    cfg.text.encoder = "tiny"
    cfg.text.max_length = 8
    cfg.text.prompt_template = template
    return cfg.text


def test_prompt_template_is_a_config_value(tmp_path):
    names = class_names("digits")
    plain, plain_mask = class_embeddings(_text_cfg("{}"), names, workdir=tmp_path / "a")
    photo, photo_mask = class_embeddings(
        _text_cfg("a photo of a {}"), names, workdir=tmp_path / "b"
    )
    assert plain.shape[0] == photo.shape[0] == 10
    # "a photo of a zero" has more tokens than "zero"
    assert (photo_mask.sum(1) > plain_mask.sum(1)).all()
    assert not np.allclose(plain, photo)
    with pytest.raises(ValueError, match="template"):
        class_embeddings(_text_cfg("no placeholder"), names, workdir=tmp_path / "c")
