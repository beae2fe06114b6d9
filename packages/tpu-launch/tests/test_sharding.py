import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.tpu_launch import (
    ShardingRuleError,
    batch_spec,
    gather_to_host0,
    host_local_to_global,
    host_shard_info,
    make_mesh,
    match_rule,
    param_paths,
    partition_specs,
    process_allgather,
    shard_params,
    sharded_init,
)

RULES = [
    (r"attention/(query|key|value)/kernel$", P("fsdp", "model")),
    (r"attention/out/kernel$", P("model", "fsdp")),
    (r"mlp/.*/kernel$", P(None, "model")),
    (r"embedding$", P("model")),
]


def _params():
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "embedding": a(8, 4),
        "block": {
            "attention": {
                "query": {"kernel": a(4, 8), "bias": a(8)},
                "key": {"kernel": a(4, 8)},
                "value": {"kernel": a(4, 8)},
                "out": {"kernel": a(8, 4)},
            },
            "mlp": {"dense_0": {"kernel": a(4, 6)}, "norm": [a(4), a(4)]},
        },
    }


def test_param_paths_join_keys_with_slashes():
    paths = param_paths(_params())
    assert "block/attention/query/kernel" in paths
    assert "block/mlp/norm/0" in paths and "block/mlp/norm/1" in paths
    assert len(paths) == len(jax.tree_util.tree_leaves(_params()))


def test_rules_first_match_wins_and_default_is_replicated():
    specs = partition_specs(_params(), RULES)
    assert specs["block"]["attention"]["query"]["kernel"] == P("fsdp", "model")
    assert specs["block"]["attention"]["query"]["bias"] == P()
    assert specs["block"]["attention"]["out"]["kernel"] == P("model", "fsdp")
    assert specs["block"]["mlp"]["dense_0"]["kernel"] == P(None, "model")
    assert specs["block"]["mlp"]["norm"] == [P(), P()]
    assert specs["embedding"] == P("model")
    # Order matters: a catch-all first shadows the rest.
    specs = partition_specs(_params(), [(r"kernel$", P()), *RULES])
    assert specs["block"]["attention"]["query"]["kernel"] == P()
    assert match_rule("x/mlp/up/kernel", dict(RULES)) == P(None, "model")
    assert match_rule("nothing", RULES) == P()


def test_rules_that_do_not_fit_name_the_parameter():
    with pytest.raises(ShardingRuleError, match=r"'block/attention/query/bias' of shape \(8,\)"):
        partition_specs(_params(), [(r"bias$", P("model", None))])
    mesh = make_mesh({"data": 1, "model": 4})
    with pytest.raises(ShardingRuleError, match=r"mesh axis 'fsdp'.*axes \('data', 'model'\)"):
        partition_specs(_params(), RULES, mesh=mesh)
    mesh = make_mesh({"data": 1, "fsdp": 1, "model": 4})
    with pytest.raises(ShardingRuleError, match=r"'block/mlp/dense_0/kernel'.*size 6"):
        partition_specs(_params(), RULES, mesh=mesh)
    with pytest.raises(ShardingRuleError, match="not a valid regex"):
        partition_specs(_params(), [("(", P())])
    with pytest.raises(ShardingRuleError, match="must map to a PartitionSpec"):
        partition_specs(_params(), [("x", "model")])


def test_shard_params_places_each_leaf_by_its_rule():
    params = _params()
    params["block"]["mlp"]["dense_0"]["kernel"] = np.ones((4, 8), np.float32)
    mesh = make_mesh({"data": 1, "fsdp": 2, "model": 2})
    sharded = shard_params(params, RULES, mesh)
    q = sharded["block"]["attention"]["query"]["kernel"]
    assert q.sharding == NamedSharding(mesh, P("fsdp", "model"))
    assert q.addressable_shards[0].data.shape == (2, 4)
    assert sharded["block"]["attention"]["query"]["bias"].sharding.is_fully_replicated
    for got, want in zip(
        jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), want)
    # Re-sharding global arrays onto another layout keeps the values.
    again = shard_params(sharded, [(r".*kernel$", P("model"))], mesh)
    np.testing.assert_array_equal(np.asarray(again["embedding"]), params["embedding"])


def test_sharded_init_is_born_sharded_and_matches_plain_init():
    def init(scale):
        w = jnp.sin(jnp.arange(8 * 16, dtype=jnp.float32).reshape(8, 16)) * scale
        return {"w": w, "b": jnp.full((16,), 2.0) * scale}

    mesh = make_mesh({"data": 2, "model": 2})
    params = sharded_init(init, [(r"^w$", P("data", "model"))], mesh, 3.0)
    assert params["w"].sharding == NamedSharding(mesh, P("data", "model"))
    assert params["w"].addressable_shards[0].data.shape == (4, 8)
    assert params["b"].sharding.is_fully_replicated
    plain = init(3.0)
    np.testing.assert_allclose(np.asarray(params["w"]), np.asarray(plain["w"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(params["b"]), np.full((16,), 6.0))


def test_host_local_to_global_on_one_process():
    mesh = make_mesh({"data": 2, "fsdp": 2, "model": 1})
    assert batch_spec(mesh) == P(("data", "fsdp"))
    assert batch_spec(make_mesh({"model": -1})) == P()
    assert host_shard_info() == (0, 1)
    assert host_shard_info(mesh) == (0, 1)
    batch = {"image": np.arange(8 * 3, dtype=np.float32).reshape(8, 3), "label": np.arange(8)}
    g = host_local_to_global(batch, mesh)
    assert g["image"].shape == (8, 3)
    assert g["image"].sharding == NamedSharding(mesh, P(("data", "fsdp")))
    assert [s.data.shape for s in g["image"].addressable_shards] == [(2, 3)] * 4
    np.testing.assert_array_equal(np.asarray(g["label"]), batch["label"])
    total = jax.jit(lambda x: jnp.sum(x["image"]))(g)
    assert float(total) == float(batch["image"].sum())
    with pytest.raises(ShardingRuleError, match=r"'label' of shape \(6,\).*4 batch slices"):
        host_local_to_global({"label": np.arange(6)}, mesh)


def test_gathers_return_numpy_on_host0():
    mesh = make_mesh({"data": 4})
    x = host_local_to_global(np.arange(8.0).reshape(8, 1), mesh)
    got = gather_to_host0({"x": x, "n": 3})
    assert isinstance(got["x"], np.ndarray)
    np.testing.assert_array_equal(got["x"][:, 0], np.arange(8.0))
    assert int(got["n"]) == 3
    np.testing.assert_array_equal(process_allgather(x)[:, 0], np.arange(8.0))
