"""Class prompts and an on-disk cache of their frozen-encoder embeddings.

The cache directory holds ``cache.json`` (what the cache is for: the checkpoint
fingerprint, the prompt template, the max length, the tokenizer's fingerprint, the
embedding width and dtype) and one ``entries/<sha256 of the prompt>.npz`` per prompt with
its embedding ``[L, D]``, mask ``[L]``, the prompt text and the cache key. A cache made for
anything else is refused, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import chex
import jax
import ml_dtypes
import numpy as np

from synthaug.io import atomic_path, write_text
from synthaug.text_encoder.encode import EncodeFn, encode_batched
from synthaug.text_encoder.errors import StaleCacheError

_FORMAT = 1


def class_prompts(class_names: Sequence[str], template: str = "{}") -> list[str]:
    """Prompts for class names.

    Args:
      class_names: the class names, e.g. ``["tench", "goldfish", ...]``.
      template: a ``str.format`` template with one ``{}`` for the name; the default is the
        class name alone, as in the paper. E.g. ``"a photo of a {}."``.

    Returns:
      One prompt per class name, in order.

    Raises:
      ValueError: a template without exactly one ``{}``, or an empty class name.
    """
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template must contain exactly one '{{}}', got {template!r}")
    try:
        template.format("x")
    except (IndexError, KeyError, ValueError) as e:
        raise ValueError(f"template {template!r} is not a valid format string: {e}") from None
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of str, got a single str")
    out = []
    for i, name in enumerate(class_names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class_names[{i}] must be a non-empty string, got {name!r}")
        out.append(template.format(name))
    return out


def params_fingerprint(params: Any) -> str:
    """A content hash of a params tree (names, dtypes, shapes and values).

    Args:
      params: a pytree of arrays.

    Returns:
      A 32-character hex string; equal trees give equal strings.
    """
    h = hashlib.blake2b(digest_size=16)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        x = np.ascontiguousarray(np.asarray(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"|{x.dtype.str if x.dtype.kind != 'V' else x.dtype.name}|{x.shape}|".encode())
        h.update(memoryview(x.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def _to_storable(x: np.ndarray) -> tuple[np.ndarray, str]:
    if x.dtype == ml_dtypes.bfloat16:
        return x.view(np.uint16), "bfloat16"
    return x, x.dtype.name


def _from_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    return x.view(ml_dtypes.bfloat16) if dtype == "bfloat16" else x


class PromptEmbeddingCache:
    """Frozen-encoder embeddings of prompts, computed once and kept on disk.

    Args:
      cache_dir: the directory of this cache (created if absent).
      fingerprint: identifies the encoder weights, e.g. :func:`params_fingerprint`.
      template: the prompt template (see :func:`class_prompts`).
      max_length: the tokenizer's padded length.

    Attributes:
      stats: ``{"computed": n, "loaded": n}`` counts of distinct prompts over this object's
        life.

    Raises:
      StaleCacheError: ``cache_dir`` holds a cache made for another fingerprint, template
        or max length.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        fingerprint: str,
        template: str = "{}",
        max_length: int = 128,
    ):
        class_prompts(["x"], template)  # validates the template
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"fingerprint must be a non-empty string, got {fingerprint!r}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
        self.cache_dir = pathlib.Path(cache_dir)
        self.fingerprint = fingerprint
        self.template = template
        self.max_length = max_length
        self.stats = {"computed": 0, "loaded": 0}
        self._meta_path = self.cache_dir / "cache.json"
        self._entries = self.cache_dir / "entries"
        self._meta = self._read_meta()
        if self._meta is not None:
            self._check(
                {"fingerprint": fingerprint, "template": template, "max_length": max_length}
            )

    # -- metadata

    def _read_meta(self) -> dict | None:
        if not self._meta_path.exists():
            return None
        try:
            meta = json.loads(self._meta_path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StaleCacheError(
                f"prompt-embedding cache {str(self.cache_dir)!r}: cache.json is unreadable ({e}); "
                "delete the directory to rebuild it"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise StaleCacheError(
                f"prompt-embedding cache {str(self.cache_dir)!r} has format "
                f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {_FORMAT}; "
                "delete the directory to rebuild it"
            )
        return meta

    def _check(self, want: dict) -> None:
        bad = {k: (self._meta.get(k), v) for k, v in want.items() if self._meta.get(k) != v}
        if bad:
            detail = "; ".join(
                f"{k}: cache has {a!r}, asked for {b!r}" for k, (a, b) in bad.items()
            )
            raise StaleCacheError(
                f"prompt-embedding cache {str(self.cache_dir)!r} was made for something else "
                f"({detail}); use another cache_dir or delete this one to rebuild it"
            )

    def _key(self, tokenizer_fp: str) -> str:
        return json.dumps(
            [self.fingerprint, self.template, self.max_length, tokenizer_fp], separators=(",", ":")
        )

    def _write_meta(self, meta: dict) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_text(self._meta_path, json.dumps(meta, indent=2, sort_keys=True))
        self._meta = meta

    # -- entries

    def _entry_path(self, prompt: str) -> pathlib.Path:
        return self._entries / (hashlib.sha256(prompt.encode()).hexdigest()[:40] + ".npz")

    def _load_entry(self, prompt: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._entry_path(prompt)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                stored = {k: z[k] for k in ("embedding", "mask", "prompt", "key", "dtype")}
        except Exception as e:
            raise StaleCacheError(
                f"prompt-embedding cache entry {str(path)!r} is unreadable "
                f"({type(e).__name__}: {e}); delete it to recompute"
            ) from None
        d, dtype = self._meta["d_model"], self._meta["dtype"]
        problems = []
        if str(stored["prompt"]) != prompt:
            problems.append(f"it holds prompt {str(stored['prompt'])!r}, not {prompt!r}")
        if str(stored["key"]) != key:
            problems.append("it was made for another checkpoint/template/length/tokenizer")
        if str(stored["dtype"]) != dtype:
            problems.append(f"dtype {str(stored['dtype'])!r}, expected {dtype!r}")
        if stored["embedding"].shape != (self.max_length, d) or stored["mask"].shape != (
            self.max_length,
        ):
            problems.append(
                f"shapes {stored['embedding'].shape}/{stored['mask'].shape}, expected "
                f"({self.max_length}, {d})/({self.max_length},)"
            )
        if problems:
            raise StaleCacheError(
                f"prompt-embedding cache entry {str(path)!r} is stale: "
                + "; ".join(problems)
                + "; delete it (or the whole cache) to recompute"
            )
        return _from_stored(stored["embedding"], dtype), stored["mask"].astype(bool)

    def _store_entry(self, prompt: str, key: str, emb: np.ndarray, mask: np.ndarray) -> None:
        arr, dtype = _to_storable(np.ascontiguousarray(emb))
        path = self._entry_path(prompt)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                embedding=arr,
                mask=mask.astype(bool),
                prompt=np.array(prompt),
                key=np.array(key),
                dtype=np.array(dtype),
            )

    # -- public

    def get(
        self,
        class_names: Sequence[str],
        *,
        tokenizer,
        encode_fn: EncodeFn,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and masks of the prompts of ``class_names``.

        Prompts already on disk are loaded; the distinct missing ones are tokenised,
        encoded once (in batches) and stored.

        Args:
          class_names: class names (duplicates allowed).
          tokenizer: a :class:`Tokenizer` whose ``max_length`` equals this cache's.
          encode_fn: from :func:`make_encode_fn`, made from the weights ``fingerprint``
            identifies.
          batch_size: prompts per encoder call.

        Returns:
          ``(embeddings [N, max_length, D], masks [N, max_length] bool)``, numpy, in the
          encoder's output dtype, in the order of ``class_names``.

        Raises:
          StaleCacheError: the cache or an entry was made for another tokenizer, width or
            dtype, or is unreadable.
          ValueError: the tokenizer's max_length differs from the cache's.
        """
        if tokenizer.max_length != self.max_length:
            raise ValueError(
                f"tokenizer.max_length is {tokenizer.max_length}, but the prompt-embedding cache "
                f"{str(self.cache_dir)!r} is for max_length {self.max_length}"
            )
        prompts = class_prompts(class_names, self.template)
        if not prompts:
            raise ValueError("class_names is empty")
        d_model = int(encode_fn.config.d_model)
        dtype = np.dtype(encode_fn.dtype).name
        want = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "template": self.template,
            "max_length": self.max_length,
            "tokenizer": tokenizer.fingerprint,
            "d_model": d_model,
            "dtype": dtype,
        }
        if self._meta is None:
            self._meta = self._read_meta()
        if self._meta is None:
            self._write_meta(want)
        else:
            self._check(want)
        self._entries.mkdir(parents=True, exist_ok=True)
        key = self._key(tokenizer.fingerprint)

        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        missing: list[str] = []
        for p in dict.fromkeys(prompts):
            entry = self._load_entry(p, key)
            if entry is None:
                missing.append(p)
            else:
                found[p] = entry
        self.stats["loaded"] += len(found)
        if missing:
            ids, mask = tokenizer(missing)
            emb, mask = encode_batched(encode_fn, ids, mask, batch_size=batch_size)
            for i, p in enumerate(missing):
                self._store_entry(p, key, emb[i], mask[i])
                found[p] = (emb[i], mask[i])
            self.stats["computed"] += len(missing)
        emb = np.stack([found[p][0] for p in prompts])
        masks = np.stack([found[p][1] for p in prompts])
        chex.assert_shape(emb, (len(prompts), self.max_length, d_model))
        chex.assert_shape(masks, (len(prompts), self.max_length))
        return emb, masks
