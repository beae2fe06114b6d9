"""Class prompts and the on-disk prompt-embedding cache."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.text_encoder import (
    PromptEmbeddingCache,
    StaleCacheError,
    Tokenizer,
    class_prompts,
    get_config,
    init_params,
    make_encode_fn,
    params_fingerprint,
)

MAX_LEN = 8


def test_class_prompts():
    assert class_prompts(["tench", "goldfish"]) == ["tench", "goldfish"]
    assert class_prompts(["tench"], "a photo of a {}.") == ["a photo of a tench."]
    for bad in ("no placeholder", "{} and {}", "{name}"):
        with pytest.raises(ValueError, match="template"):
            class_prompts(["tench"], bad)
    with pytest.raises(ValueError, match=r"class_names\[1\]"):
        class_prompts(["tench", ""])
    with pytest.raises(TypeError):
        class_prompts("tench")


def test_params_fingerprint():
    cfg = get_config("tiny")
    p = init_params(cfg, jax.random.key(0))
    f = params_fingerprint(p)
    assert len(f) == 32 and f == params_fingerprint(jax.tree_util.tree_map(np.asarray, p))
    assert f != params_fingerprint(init_params(cfg, jax.random.key(1)))
    q = jax.tree_util.tree_map(np.array, p)
    q["encoder_norm"]["scale"][3] += 1e-6
    assert params_fingerprint(q) != f
    assert params_fingerprint(jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), p)) != f


@pytest.fixture(scope="module")
def setup(spiece_path):
    tok = Tokenizer(spiece_path, max_length=MAX_LEN)
    cfg = get_config("tiny")
    params = init_params(cfg, jax.random.key(3))
    enc = make_encode_fn(cfg, params)
    calls = []

    def counting(ids, mask):  # the real encoder, counting the rows it encodes
        calls.append(ids.shape[0])
        return enc(ids, mask)

    counting.config, counting.dtype = enc.config, enc.dtype
    return tok, cfg, params, enc, counting, calls


def test_cache_computes_once_and_reloads(tmp_path, setup):
    tok, cfg, params, enc, counting, calls = setup
    fp = params_fingerprint(params)
    names = ["three", "seven", "three", "one"]
    cache = PromptEmbeddingCache(tmp_path / "c", fp, "{}", MAX_LEN)
    calls.clear()
    emb, mask = cache.get(names, tokenizer=tok, encode_fn=counting, batch_size=2)
    assert emb.shape == (4, MAX_LEN, cfg.d_model) and mask.shape == (4, MAX_LEN)
    assert cache.stats == {"computed": 3, "loaded": 0}
    assert sum(calls) == 4  # 3 distinct prompts in batches of 2 (last padded)
    # Same as encoding directly.
    ids, m = tok(names)
    np.testing.assert_allclose(emb, np.asarray(enc(ids, m)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(mask, m)
    np.testing.assert_array_equal(emb[0], emb[2])

    # A new cache object on the same directory loads; only new prompts are computed.
    calls.clear()
    again = PromptEmbeddingCache(tmp_path / "c", fp, "{}", MAX_LEN)
    emb2, mask2 = again.get(names + ["nine"], tokenizer=tok, encode_fn=counting)
    assert again.stats == {"computed": 1, "loaded": 3}
    assert sum(calls) == 1
    np.testing.assert_array_equal(emb2[:4], emb)
    np.testing.assert_array_equal(mask2[:4], mask)
    calls.clear()
    emb3, _ = PromptEmbeddingCache(tmp_path / "c", fp, "{}", MAX_LEN).get(
        ["nine"], tokenizer=tok, encode_fn=counting
    )
    assert calls == []
    np.testing.assert_array_equal(emb3[0], emb2[4])
    meta = json.loads((tmp_path / "c" / "cache.json").read_text())
    assert meta["fingerprint"] == fp and meta["tokenizer"] == tok.fingerprint


def test_cache_template_and_bfloat16(tmp_path, setup):
    tok, cfg, params, _, _, _ = setup
    enc16 = make_encode_fn(cfg, params, dtype=jnp.bfloat16)
    cache = PromptEmbeddingCache(tmp_path / "t", "fp16", "a photo of a {}", MAX_LEN)
    emb, mask = cache.get(["two", "six"], tokenizer=tok, encode_fn=enc16)
    assert emb.dtype == jnp.bfloat16
    ids, m = tok(["a photo of a two", "a photo of a six"])
    np.testing.assert_array_equal(mask, m)
    np.testing.assert_array_equal(
        emb.astype(np.float32), np.asarray(enc16(ids, m)).astype(np.float32)
    )
    back, _ = PromptEmbeddingCache(tmp_path / "t", "fp16", "a photo of a {}", MAX_LEN).get(
        ["six"], tokenizer=tok, encode_fn=enc16
    )
    assert back.dtype == jnp.bfloat16
    np.testing.assert_array_equal(back[0].astype(np.float32), emb[1].astype(np.float32))
    # The same directory refuses float32 embeddings.
    enc32 = make_encode_fn(cfg, params)
    with pytest.raises(StaleCacheError, match="dtype: cache has 'bfloat16'"):
        PromptEmbeddingCache(tmp_path / "t", "fp16", "a photo of a {}", MAX_LEN).get(
            ["six"], tokenizer=tok, encode_fn=enc32
        )


def test_cache_refuses_mismatch(tmp_path, setup, spiece_path):
    tok, cfg, params, enc, _, _ = setup
    d = tmp_path / "m"
    PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN).get(["one"], tokenizer=tok, encode_fn=enc)
    with pytest.raises(StaleCacheError, match="fingerprint: cache has 'aaa', asked for 'bbb'"):
        PromptEmbeddingCache(d, "bbb", "{}", MAX_LEN)
    with pytest.raises(StaleCacheError, match="template"):
        PromptEmbeddingCache(d, "aaa", "a {}", MAX_LEN)
    with pytest.raises(StaleCacheError, match="max_length"):
        PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN + 1)
    cache = PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN)
    with pytest.raises(ValueError, match="tokenizer.max_length is 16"):
        cache.get(["one"], tokenizer=Tokenizer(spiece_path, max_length=16), encode_fn=enc)


def test_cache_refuses_stale_entries(tmp_path, setup):
    tok, cfg, params, enc, _, _ = setup
    d = tmp_path / "s"
    PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN).get(["one", "two"], tokenizer=tok, encode_fn=enc)
    entries = sorted((d / "entries").glob("*.npz"))
    assert len(entries) == 2
    # An entry written under another key (e.g. copied from another cache).
    with np.load(entries[0]) as z:
        fields = {k: z[k] for k in z.files}
    fields["key"] = np.array('["zzz","{}",8,"x"]')
    np.savez(entries[0], **fields)
    with pytest.raises(StaleCacheError, match="made for another checkpoint"):
        PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN).get(
            ["one", "two"], tokenizer=tok, encode_fn=enc
        )
    entries[1].write_bytes(b"garbage")
    with pytest.raises(StaleCacheError, match="unreadable"):
        PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN).get(
            ["one", "two"], tokenizer=tok, encode_fn=enc
        )
    (d / "cache.json").write_text("{not json")
    with pytest.raises(StaleCacheError, match="cache.json is unreadable"):
        PromptEmbeddingCache(d, "aaa", "{}", MAX_LEN)
    # No temporary files are left behind.
    assert not list(d.rglob("*.tmp"))
