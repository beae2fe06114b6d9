"""Jitted, batched encoding with a T5 encoder."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.text_encoder.config import validate_config
from synthaug.text_encoder.model import T5Encoder, param_shapes

EncodeFn = Callable[[Any, Any], jax.Array]


def _check_params(config, params) -> None:
    want = jax.tree_util.tree_flatten_with_path(param_shapes(config))[0]
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    want_d = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in want}
    got_d = {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in got}
    missing = sorted(set(want_d) - set(got_d))
    unexpected = sorted(set(got_d) - set(want_d))
    wrong = [
        f"{k}: {got_d[k]} (expected {want_d[k]})"
        for k in want_d
        if k in got_d and got_d[k] != want_d[k]
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            "params do not match the encoder config: "
            f"missing {missing}, unexpected {unexpected}, wrong shape {wrong}"
        )


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: T5Encoder):
    """One jitted apply per module definition, shared by every encode fn built from it."""
    return jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, mask))


def make_encode_fn(config, params, *, dtype: Any = jnp.float32, precision: Any = None) -> EncodeFn:
    """A jitted encoder ``fn(ids, mask) -> embeddings``.

    Args:
      config: the encoder ConfigDict.
      params: the encoder params tree (numpy or jax arrays, e.g. from
        :func:`load_hf_checkpoint`); checked against ``config``.
      dtype: computation and output dtype: ``jnp.float32`` or ``jnp.bfloat16`` (params are
        then stored in bfloat16 too, halving their memory; norms and softmax stay float32).
      precision: matmul precision (None: the backend default; ``"highest"`` for float32
        reference accuracy on accelerators).

    Returns:
      ``fn(ids, mask)``: ids int ``[N, L]``, mask bool ``[N, L]`` → ``[N, L, d_model]`` in
      ``dtype``. Each new ``(N, L)`` compiles once; see :func:`encode_batched` to keep one
      shape. The function has attributes ``config``, ``dtype`` and ``params`` (the
      device copy).

    Raises:
      ValueError: params that do not fit the config, or a dtype that is not float32 or
        bfloat16; at call time, ids outside the vocabulary (checked for numpy input).
    """
    validate_config(config)
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
    _check_params(config, params)
    model = T5Encoder.from_config(config, dtype=dtype, precision=precision)
    dev_params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params)

    _apply = _jitted_apply(model)
    vocab = config.vocab_size

    def encode(ids, mask) -> jax.Array:
        chex.assert_rank(ids, 2)
        chex.assert_shape(mask, ids.shape)
        chex.assert_type(ids, int)
        chex.assert_type(mask, bool)
        if isinstance(ids, np.ndarray) and ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(
                f"token ids must lie in [0, {vocab}) (the encoder's vocab_size), got "
                f"[{ids.min()}, {ids.max()}]; is the tokenizer larger than the checkpoint?"
            )
        out = _apply(dev_params, ids, mask)
        chex.assert_shape(out, (*ids.shape, config.d_model))
        return out

    encode.config = config
    encode.dtype = dtype
    encode.params = dev_params
    return encode


def encode_batched(
    encode_fn: EncodeFn, ids: np.ndarray, mask: np.ndarray, *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Encode many sequences in fixed-size batches (one compilation), on the host.

    Calls have the shape ``[min(batch_size, N), L]``: the last batch is padded with copies of
    its first row, so one compilation serves every batch.

    Args:
      encode_fn: from :func:`make_encode_fn`.
      ids: int ``[N, L]``.
      mask: bool ``[N, L]``.
      batch_size: rows per call.

    Returns:
      ``(embeddings [N, L, D], mask [N, L])`` as numpy arrays.
    """
    ids = np.asarray(ids)
    mask = np.asarray(mask)
    chex.assert_rank(ids, 2)
    chex.assert_shape(mask, ids.shape)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = ids.shape[0]
    if n == 0:
        raise ValueError("encode_batched got no sequences (ids has 0 rows)")
    batch_size = min(batch_size, n)
    chunks = []
    for b in range(math.ceil(n / batch_size)):
        i = ids[b * batch_size : (b + 1) * batch_size]
        m = mask[b * batch_size : (b + 1) * batch_size]
        k = i.shape[0]
        if k < batch_size:
            i = np.concatenate([i, np.repeat(i[:1], batch_size - k, 0)])
            m = np.concatenate([m, np.repeat(m[:1], batch_size - k, 0)])
        chunks.append(np.asarray(encode_fn(i.astype(np.int32), m.astype(bool)))[:k])
    return np.concatenate(chunks), mask.astype(bool)
