"""T5 v1.1 encoder configurations (ml_collections ConfigDicts).

The sizes are those of the public T5 v1.1 checkpoints (``google/t5-v1_1-*``); ``tiny`` is a
toy size for tests and the CPU demo.
"""

from __future__ import annotations

import ml_collections

# name: (d_model, d_kv, num_heads, d_ff, num_layers)
_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 16, 4, 128, 2),
    "small": (512, 64, 6, 1024, 8),
    "base": (768, 64, 12, 2048, 12),
    "large": (1024, 64, 16, 2816, 24),
    "xl": (2048, 64, 32, 5120, 24),
    "xxl": (4096, 64, 64, 10240, 24),
}

PRESETS: tuple[str, ...] = tuple(_PRESETS)

_T5_VOCAB = 32128
_TINY_VOCAB = 256

_KEYS = (
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


def get_config(preset: str = "xxl") -> ml_collections.ConfigDict:
    """The configuration of a T5 v1.1 encoder.

    Args:
      preset: one of ``"tiny"``, ``"small"``, ``"base"``, ``"large"``, ``"xl"``, ``"xxl"``.

    Returns:
      A ConfigDict with ``vocab_size``, ``d_model``, ``d_kv``, ``num_heads``, ``d_ff``,
      ``num_layers``, ``relative_attention_num_buckets``, ``relative_attention_max_distance``
      and ``layer_norm_epsilon``. Adding unknown keys later is an error; values may be
      overridden (e.g. ``cfg.vocab_size = 64`` for a small tokenizer).

    Raises:
      ValueError: an unknown preset.
    """
    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {list(_PRESETS)}, got {preset!r}")
    d_model, d_kv, num_heads, d_ff, num_layers = _PRESETS[preset]
    cfg = ml_collections.ConfigDict()
    cfg.vocab_size = _TINY_VOCAB if preset == "tiny" else _T5_VOCAB
    cfg.d_model = d_model
    cfg.d_kv = d_kv
    cfg.num_heads = num_heads
    cfg.d_ff = d_ff
    cfg.num_layers = num_layers
    cfg.relative_attention_num_buckets = 32
    cfg.relative_attention_max_distance = 128
    cfg.layer_norm_epsilon = 1e-6
    cfg.lock()
    return cfg


def make_config(**values) -> ml_collections.ConfigDict:
    """A config from explicit values (e.g. read from a checkpoint's ``config.json``).

    Args:
      **values: every key of :func:`get_config`'s result; ``relative_attention_num_buckets``
        (32), ``relative_attention_max_distance`` (128) and ``layer_norm_epsilon`` (1e-6)
        may be omitted.

    Returns:
      A locked ConfigDict, validated by :func:`validate_config`.
    """
    values = dict(values)
    values.setdefault("relative_attention_num_buckets", 32)
    values.setdefault("relative_attention_max_distance", 128)
    values.setdefault("layer_norm_epsilon", 1e-6)
    unknown = sorted(set(values) - set(_KEYS))
    missing = sorted(set(_KEYS) - set(values))
    if unknown or missing:
        raise ValueError(f"T5 encoder config: unknown keys {unknown}, missing keys {missing}")
    cfg = ml_collections.ConfigDict({k: values[k] for k in _KEYS})
    cfg.lock()
    validate_config(cfg)
    return cfg


def validate_config(cfg) -> None:
    """Check that ``cfg`` has exactly the keys of a T5 encoder config, with sane values.

    Raises:
      ValueError: naming the bad key and what was expected.
    """
    keys = set(cfg.keys())
    if keys != set(_KEYS):
        raise ValueError(
            f"T5 encoder config: unknown keys {sorted(keys - set(_KEYS))}, "
            f"missing keys {sorted(set(_KEYS) - keys)}"
        )
    for k in _KEYS[:8]:
        v = cfg[k]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"T5 encoder config: {k} must be a positive int, got {v!r}")
    if cfg.relative_attention_num_buckets % 2 or cfg.relative_attention_num_buckets < 4:
        raise ValueError(
            "T5 encoder config: relative_attention_num_buckets must be even and >= 4 "
            f"(bidirectional buckets), got {cfg.relative_attention_num_buckets}"
        )
    if not cfg.layer_norm_epsilon > 0:
        raise ValueError(
            f"T5 encoder config: layer_norm_epsilon must be > 0, got {cfg.layer_norm_epsilon!r}"
        )
