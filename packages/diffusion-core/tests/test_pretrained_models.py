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


def _adm_train_step(label_dropout):
    cfg = dc.get_preset("tiny_adm")
    with cfg.unlocked():
        cfg.diffusion.label_dropout = label_dropout
        cfg.model.dropout = 0.0
        cfg.optimizer.warmup_steps = 0
        cfg.optimizer.learning_rate = 1e-2
    model = dc.make_model(cfg)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32),
        "labels": np.array([1, 2, 3, 1], np.int32),
    }
    state = dc.create_train_state(jax.random.key(0), model, cfg, batch)
    # Random weights everywhere (ADM zero-initialises its output layers, which would leave
    # every other gradient zero at the first step).
    leaves, tree = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    noisy = [
        0.1 * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)
    ]
    state = dc.state_from_params(jax.tree.unflatten(tree, noisy), cfg)
    new, metrics = dc.make_train_step(model, cfg)(state, batch, jax.random.key(1))
    assert bool(metrics["finite"])
    before, after = state.params["label_emb"]["embedding"], new.params["label_emb"]["embedding"]
    return np.abs(np.asarray(after) - np.asarray(before)).sum(axis=1)


def test_class_conditional_train_step_trains_the_labels_it_is_given():
    moved = _adm_train_step(0.0)
    # The batch's classes (1, 2, 3) are trained; the others get no gradient.
    assert (moved[[1, 2, 3]] > 0).all() and (moved[[0, 4, 5, 6, 7, 8, 9]] == 0).all()
    # Every label dropped: no label embedding is trained.
    assert (_adm_train_step(1.0) == 0).all()


def test_negative_label_is_no_label():
    cfg = dc.get_preset("tiny_adm")
    model = dc.make_model(cfg)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 3)).astype(np.float32)
    t = np.array([0.5], np.float32)
    params = model.init(jax.random.key(0), x, t, labels=np.array([0]))["params"]
    leaves, tree = jax.tree.flatten(params)  # random weights (ADM zero-initialises outputs)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(
        tree,
        [0.1 * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)],
    )
    zeroed = dict(params)
    zeroed["label_emb"] = {"embedding": np.zeros_like(params["label_emb"]["embedding"])}
    null = model.apply({"params": params}, x, t, labels=np.array([-1]))
    np.testing.assert_allclose(null, model.apply({"params": zeroed}, x, t, labels=np.array([3])))
    assert not np.allclose(null, model.apply({"params": params}, x, t, labels=np.array([3])))
