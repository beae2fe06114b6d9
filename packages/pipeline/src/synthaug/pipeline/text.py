"""Class-name prompts through the frozen T5 encoder: tokenizer, weights, embedding cache."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from synthaug.pipeline.io import require_dir, require_file

__all__ = ["TextEncoder", "class_embeddings", "load_text_encoder"]


class TextEncoder:
    """A tokenizer plus a jitted encoder, and a fingerprint of the encoder weights.

    Attributes:
      tokenizer: ``synthaug.text_encoder.Tokenizer``.
      encode_fn: from ``synthaug.text_encoder.make_encode_fn``.
      fingerprint: ``params_fingerprint`` of the weights (keys the embedding cache).
      d_model: the embedding width.
    """

    def __init__(self, tokenizer, encode_fn, fingerprint: str):
        self.tokenizer = tokenizer
        self.encode_fn = encode_fn
        self.fingerprint = fingerprint
        self.d_model = int(encode_fn.config.d_model)


def _template(text_cfg) -> str:
    """The prompt template of a ``text`` config (``text.prompt_template``, default ``"{}"``)."""
    return str(text_cfg.get("prompt_template", "{}"))


def _tokenizer_path(text_cfg, class_names: Sequence[str], workdir: pathlib.Path) -> pathlib.Path:
    from synthaug import text_encoder as te

    if text_cfg.tokenizer:
        return require_file(text_cfg.tokenizer, "SentencePiece tokenizer (text.tokenizer)")
    # Toy runs: a small SentencePiece model trained on the prompts themselves. It lives next
    # to the embedding cache when there is one, so that every stage sharing the cache shares
    # the tokenizer too.
    where = pathlib.Path(text_cfg.cache) if text_cfg.cache else workdir / "text"
    path = where / "spiece.model"
    if not path.is_file():
        prompts = te.class_prompts(list(class_names), _template(text_cfg))
        te.train_tokenizer(prompts, path, vocab_size=64)
    return path


def load_text_encoder(
    text_cfg, class_names: Sequence[str], *, workdir: str | os.PathLike
) -> TextEncoder:
    """The tokenizer and frozen encoder a stage's ``text`` config describes.

    Args:
      text_cfg: the ``text`` section of a stage config (see :mod:`synthaug.pipeline.schemas`).
      class_names: the class names (used to train a toy tokenizer when none is given).
      workdir: the stage's work directory.

    Returns:
      A :class:`TextEncoder`.

    Raises:
      MissingPathError: a tokenizer or checkpoint path that does not exist.
    """
    import jax

    from synthaug import text_encoder as te

    workdir = pathlib.Path(workdir)
    if text_cfg.checkpoint:
        ckpt = pathlib.Path(text_cfg.checkpoint)
        if not ckpt.exists():
            require_dir(ckpt, "text encoder checkpoint (text.checkpoint)")
        if ckpt.suffix == ".safetensors" or (ckpt.is_dir() and any(ckpt.glob("*.safetensors*"))):
            config, params = te.load_hf_checkpoint(ckpt)
        else:
            config = te.get_config(text_cfg.encoder)
            params = te.load_t5x_checkpoint(ckpt, config)
    else:
        config = te.get_config(text_cfg.encoder)
        params = te.init_params(config, jax.random.key(int(text_cfg.seed)))
    tok = te.Tokenizer(_tokenizer_path(text_cfg, class_names, workdir), int(text_cfg.max_length))
    if tok.vocab_size > config.vocab_size:
        raise ValueError(
            f"text.tokenizer has {tok.vocab_size} pieces but the {text_cfg.encoder!r} encoder "
            f"only {config.vocab_size}"
        )
    encode_fn = te.make_encode_fn(config, params)
    return TextEncoder(tok, encode_fn, te.params_fingerprint(params))


def class_embeddings(
    text_cfg, class_names: Sequence[str], *, workdir: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every class's prompt: ``text.prompt_template`` filled with its name
    (the default ``"{}"`` is the name itself, as in the paper).

    Args:
      text_cfg: the ``text`` section of a stage config.
      class_names: the class names, index = label.
      workdir: the stage's work directory.

    Returns:
      ``(emb float32 [K, max_length, d_model], mask bool [K, max_length])``.
    """
    from synthaug import text_encoder as te

    enc = load_text_encoder(text_cfg, class_names, workdir=workdir)
    if text_cfg.cache:
        cache = te.PromptEmbeddingCache(
            text_cfg.cache,
            enc.fingerprint,
            template=_template(text_cfg),
            max_length=int(text_cfg.max_length),
        )
        emb, mask = cache.get(list(class_names), tokenizer=enc.tokenizer, encode_fn=enc.encode_fn)
    else:
        ids, mask = enc.tokenizer(te.class_prompts(list(class_names), _template(text_cfg)))
        emb, mask = te.encode_batched(enc.encode_fn, ids, mask)
    return np.asarray(emb, np.float32), np.asarray(mask, bool)
