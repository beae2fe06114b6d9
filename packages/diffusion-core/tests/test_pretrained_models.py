"""The ADM / DeepFloyd IF presets: parameter counts equal the reference implementations', and
the state-dict converters are strict.

Reference counts: tools/fixtures/make_pretrained_reference.py instantiates guided-diffusion's
``create_model`` / ``sr_create_model`` and diffusers' ``UNet2DConditionModel`` at the real
configs on the meta device (fixtures/pretrained_param_counts.json). The forward-pass parity
against the reference outputs lives in the pipeline's tests, next to the reference-written
weight files it imports.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from synthaug import diffusion_core as dc
from synthaug.diffusion_core.convert import convert_adm_state_dict, convert_if_state_dict

COUNTS = json.loads(
    (pathlib.Path(__file__).parent / "fixtures" / "pretrained_param_counts.json").read_text()
)


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_parameter_count_equals_reference(preset):
    assert dc.param_count(dc.get_preset(preset)) == COUNTS[preset]


def test_adm_converter_names_missing_and_unexpected_keys():
    cfg = dc.get_preset("tiny_adm")
    with pytest.raises(
        ValueError,
        match=r"ADM state dict does not match the model: missing tensors input_blocks\.0\.0\.bias",
    ) as e:
        convert_adm_state_dict({"bogus.weight": np.zeros(3)}, cfg)
    msg = str(e.value)
    assert "\n" not in msg and "unexpected tensors bogus.weight" in msg


def test_if_converter_rejects_wrong_config():
    with pytest.raises(ValueError, match="IF weights need a text-conditioned adm preset"):
        convert_if_state_dict({}, dc.get_preset("tiny_adm"))
    with pytest.raises(ValueError, match="ADM weights need"):
        convert_adm_state_dict({}, dc.get_preset("tiny_if"))


def test_adm_forward_shapes_and_labels_required():
    cfg = dc.get_preset("tiny_adm")
    model = dc.make_model(cfg)
    x = np.zeros((2, 16, 16, 3), np.float32)
    t = np.array([0.001, 1.0], np.float32)
    params = model.init(jax.random.key(0), x, t, labels=np.array([1, 2]))["params"]
    out = model.apply({"params": params}, x, t, labels=np.array([1, 2]))
    assert out.shape == (2, 16, 16, 6)
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        model.apply({"params": params}, x, t)
