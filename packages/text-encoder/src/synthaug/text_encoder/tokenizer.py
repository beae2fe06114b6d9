"""SentencePiece tokenisation as T5 does it: pieces, then EOS, padded with the pad id."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
from collections.abc import Iterable, Sequence

import chex
import numpy as np
import sentencepiece as spm

from synthaug.io import atomic_path


class Tokenizer:
    """T5 tokenisation from a ``spiece.model`` file.

    Each text becomes its SentencePiece ids followed by EOS; a text longer than
    ``max_length`` is cut to ``max_length - 1`` pieces and EOS (as the HF T5 tokenizer
    does), a shorter one is padded with the pad id. The mask is True on the pieces and EOS.

    Args:
      spiece_path: path of a SentencePiece model (T5's ``spiece.model``).
      max_length: padded sequence length (128 by default, as Imagen).

    Attributes:
      max_length, vocab_size, pad_id, eos_id, fingerprint (sha256 of the model file).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not a SentencePiece model, it has no EOS piece, or
        ``max_length`` < 2.
    """

    def __init__(self, spiece_path: str | os.PathLike, max_length: int = 128):
        path = pathlib.Path(spiece_path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model {str(path)!r} does not exist")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (room for EOS), got {max_length!r}")
        data = path.read_bytes()
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError on a bad proto
            raise ValueError(
                f"{str(path)!r} is not a SentencePiece model ({type(e).__name__}: {e})"
            ) from None
        if sp.GetPieceSize() <= 0:
            raise ValueError(f"{str(path)!r} is not a SentencePiece model (no pieces)")
        if sp.eos_id() < 0:
            raise ValueError(f"SentencePiece model {str(path)!r} has no EOS piece; T5 needs one")
        self.path = path
        self.max_length = max_length
        self._sp = sp
        self.vocab_size = int(sp.GetPieceSize())
        self.eos_id = int(sp.eos_id())
        self.pad_id = int(sp.pad_id()) if sp.pad_id() >= 0 else 0
        self.fingerprint = hashlib.sha256(data).hexdigest()

    def encode(self, text: str) -> list[int]:
        """The ids of one text: pieces then EOS, unpadded and untruncated."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(self._sp.EncodeAsIds(text)) + [self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids, stopping at EOS and skipping padding."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(i)
        return self._sp.DecodeIds(out)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise a batch.

        Args:
          texts: a sequence of strings (a single str is an error).

        Returns:
          ``(ids, mask)``: int32 ``[N, max_length]`` and bool ``[N, max_length]``.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str; wrap it in a list")
        texts = list(texts)
        n, length = len(texts), self.max_length
        ids = np.full((n, length), self.pad_id, np.int32)
        mask = np.zeros((n, length), bool)
        for b, text in enumerate(texts):
            row = self.encode(text)
            if len(row) > length:
                row = row[: length - 1] + [self.eos_id]
            ids[b, : len(row)] = row
            mask[b, : len(row)] = True
        chex.assert_shape([ids, mask], (n, length))
        return ids, mask


def train_tokenizer(
    texts: Sequence[str],
    path: str | os.PathLike,
    vocab_size: int = 64,
    *,
    model_type: str = "unigram",
) -> pathlib.Path:
    """Train a small SentencePiece model with T5's special ids (pad 0, EOS 1, unk 2, no BOS).

    For toy runs and tests where T5's own ``spiece.model`` is not available; the vocabulary
    limit is soft, so a handful of texts is enough.

    Args:
      texts: training sentences (at least one non-empty).
      path: where to write the model (written to a temporary name, then renamed).
      vocab_size: the largest vocabulary size wanted.
      model_type: SentencePiece model type ("unigram", "bpe", "char" or "word").

    Returns:
      The path written.
    """
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4, got {vocab_size}")
    path = pathlib.Path(path)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
