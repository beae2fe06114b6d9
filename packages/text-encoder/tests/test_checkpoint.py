"""Checkpoint import: HF safetensors (single, sharded, seq2seq) and t5x/orbax, with parity
against the transformers reference outputs in fixtures/t5_outputs.npz."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from safetensors.numpy import load_file, save_file

from synthaug.text_encoder import (
    CheckpointError,
    load_hf_checkpoint,
    load_t5x_checkpoint,
    make_config,
    make_encode_fn,
    params_fingerprint,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def _fixture_config(golden):
    c = json.loads(str(golden["__header__"]))["config"]
    keys = (
        "vocab_size",
        "d_model",
        "d_kv",
        "num_heads",
        "d_ff",
        "num_layers",
        "relative_attention_num_buckets",
        "relative_attention_max_distance",
        "layer_norm_epsilon",
    )
    return make_config(**{k: c[k] for k in keys})


@pytest.fixture(scope="module")
def hf(fixtures_dir):
    return load_hf_checkpoint(fixtures_dir / "t5_encoder")


def _encode(config, params, golden):
    fn = make_encode_fn(config, params)
    return np.asarray(fn(golden["input_ids"], golden["attention_mask"]))


def test_hf_encoder_parity(hf, golden):
    config, params = hf
    assert config.to_dict() == _fixture_config(golden).to_dict()
    out = _encode(config, params, golden)
    ref = golden["encoder_last_hidden_state"]
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, **TOL)


def test_hf_sharded_equals_single(hf, fixtures_dir):
    assert len(list((fixtures_dir / "t5_encoder_sharded").glob("*.safetensors"))) > 1
    config, params = load_hf_checkpoint(fixtures_dir / "t5_encoder_sharded")
    assert config.to_dict() == hf[0].to_dict()
    assert params_fingerprint(params) == params_fingerprint(hf[1])
    # The index file can also be named directly.
    _, p2 = load_hf_checkpoint(fixtures_dir / "t5_encoder_sharded" / "model.safetensors.index.json")
    assert params_fingerprint(p2) == params_fingerprint(hf[1])


def test_hf_seq2seq_parity(fixtures_dir, golden):
    names = load_file(fixtures_dir / "t5_seq2seq" / "model.safetensors")
    assert any(n.startswith("decoder.") for n in names)
    config, params = load_hf_checkpoint(fixtures_dir / "t5_seq2seq" / "model.safetensors")
    np.testing.assert_allclose(
        _encode(config, params, golden), golden["seq2seq_last_hidden_state"], **TOL
    )


def test_hf_without_config_json_and_legacy_names(tmp_path, hf, fixtures_dir):
    """Older files: embedding under encoder.embed_tokens, an lm_head; sizes from shapes."""
    tensors = load_file(fixtures_dir / "t5_encoder" / "model.safetensors")
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
    tensors["lm_head.weight"] = np.zeros_like(tensors["encoder.embed_tokens.weight"])
    save_file(tensors, tmp_path / "model.safetensors")
    config, params = load_hf_checkpoint(tmp_path)
    expect = hf[0].to_dict()
    expect["relative_attention_max_distance"] = 128  # not recoverable from shapes
    assert config.to_dict() == expect
    assert params_fingerprint(params) == params_fingerprint(hf[1])


def test_hf_bfloat16_file(tmp_path, hf, fixtures_dir, golden):
    from safetensors.flax import save_file as save_flax

    tensors = load_file(fixtures_dir / "t5_encoder" / "model.safetensors")
    save_flax(
        {k: jnp.asarray(v, jnp.bfloat16) for k, v in tensors.items()},
        str(tmp_path / "model.safetensors"),
    )
    shutil.copy(fixtures_dir / "t5_encoder" / "config.json", tmp_path / "config.json")
    _, params = load_hf_checkpoint(tmp_path)
    emb = params["token_embedder"]["embedding"]
    assert emb.dtype == np.float32
    ref = hf[1]["token_embedder"]["embedding"]
    np.testing.assert_allclose(emb, ref, rtol=1e-2, atol=1e-2)
    assert not np.array_equal(emb, ref)  # really rounded to bfloat16
    # Loaded as bfloat16 and encoded in bfloat16: close to the float32 reference.
    config, p16 = load_hf_checkpoint(tmp_path, dtype=jnp.bfloat16)
    assert p16["encoder_norm"]["scale"].dtype == jnp.bfloat16
    fn = make_encode_fn(config, p16, dtype=jnp.bfloat16)
    out = np.asarray(fn(golden["input_ids"], golden["attention_mask"])).astype(np.float32)
    want = golden["encoder_last_hidden_state"]
    m = golden["attention_mask"]
    rel = np.abs(out - want)[m].mean() / np.abs(want)[m].mean()
    assert rel < 0.05, rel


def test_hf_missing_and_unexpected_named(tmp_path, fixtures_dir):
    tensors = load_file(fixtures_dir / "t5_encoder" / "model.safetensors")
    del tensors["encoder.block.1.layer.1.DenseReluDense.wi_1.weight"]
    tensors["encoder.block.0.layer.0.SelfAttention.extra.weight"] = np.zeros(3, np.float32)
    tensors["encoder.block.0.layer.1.layer_norm.weight"] = np.ones(5, np.float32)
    save_file(tensors, tmp_path / "model.safetensors")
    shutil.copy(fixtures_dir / "t5_encoder" / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError) as e:
        load_hf_checkpoint(tmp_path)
    msg = str(e.value)
    assert "encoder.block.1.layer.1.DenseReluDense.wi_1.weight" in msg
    assert "encoder.block.0.layer.0.SelfAttention.extra.weight" in msg
    assert "encoder.block.0.layer.1.layer_norm.weight: (5,)" in msg
    assert e.value.missing == ("encoder.block.1.layer.1.DenseReluDense.wi_1.weight",)
    assert e.value.unexpected == ("encoder.block.0.layer.0.SelfAttention.extra.weight",)


def test_hf_bad_inputs(tmp_path, fixtures_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!"
    )
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_hf_checkpoint(tmp_path)
    cfg = json.loads((fixtures_dir / "t5_encoder" / "config.json").read_text())
    cfg["feed_forward_proj"] = "relu"
    d = tmp_path / "v10"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    shutil.copy(fixtures_dir / "t5_encoder" / "model.safetensors", d / "model.safetensors")
    with pytest.raises(ValueError, match="only T5 v1.1"):
        load_hf_checkpoint(d)
    # A truncated shard is reported, not read past its end.
    t = tmp_path / "trunc"
    t.mkdir()
    data = (fixtures_dir / "t5_encoder" / "model.safetensors").read_bytes()
    (t / "model.safetensors").write_bytes(data[: len(data) // 2])
    shutil.copy(fixtures_dir / "t5_encoder" / "config.json", t / "config.json")
    with pytest.raises(ValueError, match="truncated"):
        load_hf_checkpoint(t)


# ------------------------------------------------------------------------------- t5x


def _t5x_tree(fixtures_dir, *, split_heads=False, num_heads=4):
    """The fixture's HF weights in the t5x parameter layout (written out independently)."""
    w = load_file(fixtures_dir / "t5_seq2seq" / "model.safetensors")
    enc: dict = {
        "relpos_bias": {
            "rel_embedding": w[
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
            ].T
        },
        "encoder_norm": {"scale": w["encoder.final_layer_norm.weight"]},
    }
    n_layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.block."))
    for i in range(n_layers):
        p = f"encoder.block.{i}.layer."
        att = {}
        for hf, name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
            k = w[f"{p}0.SelfAttention.{hf}.weight"].T
            if split_heads:
                k = (
                    k.reshape(k.shape[0], num_heads, -1)
                    if name != "out"
                    else k.reshape(num_heads, -1, k.shape[1])
                )
            att[name] = {"kernel": k}
        enc[f"layers_{i}"] = {
            "pre_attention_layer_norm": {"scale": w[f"{p}0.layer_norm.weight"]},
            "attention": att,
            "pre_mlp_layer_norm": {"scale": w[f"{p}1.layer_norm.weight"]},
            "mlp": {
                n: {"kernel": w[f"{p}1.DenseReluDense.{n}.weight"].T}
                for n in ("wi_0", "wi_1", "wo")
            },
        }
    decoder = {
        "decoder_norm": {"scale": w["decoder.final_layer_norm.weight"]},
        "logits_dense": {"kernel": w["shared.weight"].T.copy()},
    }
    return {
        "target": {
            "token_embedder": {"embedding": w["shared.weight"]},
            "encoder": enc,
            "decoder": decoder,
        },
        "state": {
            "step": np.int32(1000),
            "param_states": {"token_embedder": {"embedding": {"v": np.zeros(3, np.float32)}}},
        },
    }


def _save(tree, path):
    ckptr = ocp.PyTreeCheckpointer()
    ckptr.save(path, jax.tree_util.tree_map(np.asarray, tree))
    return path


@pytest.mark.parametrize("split_heads", [False, True])
def test_t5x_orbax_parity(tmp_path, fixtures_dir, golden, split_heads):
    config = _fixture_config(golden)
    path = _save(_t5x_tree(fixtures_dir, split_heads=split_heads), tmp_path / "checkpoint_1000")
    params = load_t5x_checkpoint(path, config)
    _, hf_params = load_hf_checkpoint(fixtures_dir / "t5_seq2seq")
    assert params_fingerprint(params) == params_fingerprint(hf_params)
    np.testing.assert_allclose(
        _encode(config, params, golden), golden["seq2seq_last_hidden_state"], **TOL
    )


def test_t5x_missing_and_unexpected_named(tmp_path, fixtures_dir, golden):
    config = _fixture_config(golden)
    tree = _t5x_tree(fixtures_dir)
    del tree["target"]["encoder"]["layers_2"]["mlp"]["wo"]
    tree["target"]["encoder"]["layers_0"]["attention"]["query"]["bias"] = np.zeros(32, np.float32)
    path = _save(tree, tmp_path / "ck")
    with pytest.raises(CheckpointError) as e:
        load_t5x_checkpoint(path, config)
    assert e.value.missing == ("encoder/layers_2/mlp/wo/kernel",)
    assert e.value.unexpected == ("encoder/layers_0/attention/query/bias",)
    assert "encoder/layers_2/mlp/wo/kernel" in str(e.value)
    # A config that does not fit the checkpoint: shapes are named.
    big = make_config(**{**config.to_dict(), "d_ff": 64})
    with pytest.raises(CheckpointError, match=r"wi_0/kernel: \(32, 48\)"):
        load_t5x_checkpoint(_save(_t5x_tree(fixtures_dir), tmp_path / "ck2"), big)


def test_t5x_bad_paths(tmp_path, golden):
    config = _fixture_config(golden)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_t5x_checkpoint(tmp_path / "missing", config)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="orbax"):
        load_t5x_checkpoint(tmp_path / "junk", config)
