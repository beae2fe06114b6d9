"""Training on a device mesh (4 simulated CPU devices, see conftest.py): equal to one device."""

import jax
import numpy as np
import pytest
from diffusion_core_testutil import micro_base
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from synthaug.diffusion_core import (
    create_train_state,
    make_model,
    param_path,
    state_shardings,
    train,
)

C, L, B, STEPS = 5, 6, 8, 4
_r = np.random.default_rng(7)
TABLE = {
    "text_emb": _r.normal(size=(C, L, 8)).astype(np.float32),
    "text_mask": np.arange(L)[None, :] < _r.integers(1, L + 1, (C, 1)),
}


# FSDP: the res-block convolutions and embedding projections split over "fsdp" (Adam's
# moments follow them); everything else replicated.
def _fsdp_specs(params):
    """The placement tpu-launch's rule matcher gives these rules (FSDP_RULES)."""
    import re

    def spec(path, _):
        name = param_path(path)
        for pattern, s in FSDP_RULES:
            if re.search(pattern, name):
                return s
        return P()

    return jax.tree_util.tree_map_with_path(spec, params)


FSDP_RULES = [
    (r"res_\d+/conv_\d/kernel$", P(None, None, None, "fsdp")),
    (r"emb_proj/kernel$", P("fsdp", None)),
    (r"time_embed/dense_1/kernel$", P(None, "fsdp")),
]


def _config():
    config = micro_base()
    config.optimizer.flatten = False  # per-parameter moments, so that FSDP can split them
    config.train.ema_decay = 0.5  # the EMA moves visibly in a few steps
    return config


def data_labels(step):
    r = np.random.default_rng(100 + step)
    return {
        "image": r.uniform(-1, 1, (B, 8, 8, 3)).astype(np.float32),
        "labels": r.integers(0, C, B).astype(np.int32),
    }


def data_text(step):
    b = data_labels(step)
    lab = b.pop("labels")
    return dict(b, text_emb=TABLE["text_emb"][lab], text_mask=TABLE["text_mask"][lab])


@pytest.fixture(scope="module")
def one_device():
    config = _config()
    # One device, the text gathered on the host: the reference.
    return train(make_model(config), config, data_text, num_steps=STEPS, log_every=1)


@pytest.mark.parametrize(
    "axes,shape,rules",
    [(("data",), (4,), None), (("data", "fsdp"), (2, 2), _fsdp_specs)],
    ids=["data4", "data2xfsdp2"],
)
def test_mesh_run_equals_one_device(one_device, axes, shape, rules):
    ref_state, ref_hist = one_device
    config = _config()
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(shape), axes)
    state, hist = train(
        make_model(config),
        config,
        data_labels,  # labels only: the text is looked up on the devices
        num_steps=STEPS,
        log_every=1,
        mesh=mesh,
        param_specs=rules,
        text_table=TABLE,
    )
    assert [h["step"] for h in hist] == list(range(1, STEPS + 1))
    np.testing.assert_allclose(
        [h["loss"] for h in hist], [h["loss"] for h in ref_hist], rtol=1e-5, atol=0
    )
    # The EMA parameters to 1e-6 relative in norm over all of them, and each to 1e-5
    # absolute: the gradients' reductions sum in another order (1e-7 relative), which Adam's
    # first steps amplify for a parameter whose gradient is near zero (its update is about
    # lr * sign(g)); the learning rate of these steps is 2e-3 to 8e-3.
    ours = [np.asarray(a) for a in jax.tree.leaves(state.ema_params)]
    ref = [np.asarray(b) for b in jax.tree.leaves(ref_state.ema_params)]
    diff = sum(float(np.sum((a - b) ** 2)) for a, b in zip(ours, ref, strict=True))
    rel = (diff / sum(float(np.sum(b**2)) for b in ref)) ** 0.5
    assert rel < 1e-6, rel
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    kernel = state.params["mid_res_0"]["conv_0"]["kernel"]
    if rules:
        # Parameters, EMA and Adam's moments are split; a device holds half of each.
        assert kernel.sharding.spec == P(None, None, None, "fsdp")
        assert kernel.addressable_shards[0].data.shape == (3, 3, 4, 2)
        ema = state.ema_params["mid_res_0"]["conv_0"]["kernel"]
        assert ema.sharding.spec == kernel.sharding.spec
        specs = {
            leaf.sharding.spec
            for leaf in jax.tree.leaves(state.opt_state)
            if getattr(leaf, "shape", ()) == (3, 3, 4, 4)
        }
        assert P(None, None, None, "fsdp") in specs
    else:
        assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 4


def test_state_shardings_reject_a_rule_that_does_not_fit():
    config = _config()
    model = make_model(config)
    mesh = Mesh(np.array(jax.devices()[:4]), ("fsdp",))
    abstract = jax.eval_shape(
        lambda k: create_train_state(k, model, config, data_text(0)), jax.random.key(0)
    )

    def only(name, spec):
        return lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: spec if param_path(path) == name else P(), params
        )

    with pytest.raises(ValueError, match=r"conv_out/kernel.*not divisible by mesh axes"):
        state_shardings(abstract, mesh, only("conv_out/kernel", P(None, None, None, "fsdp")))
    with pytest.raises(ValueError, match="names mesh axis 'model'"):
        state_shardings(abstract, mesh, only("conv_in/kernel", P("model")))
    with pytest.raises(ValueError, match="structure of the parameters"):
        state_shardings(abstract, mesh, {"conv_in": P()})
