"""SentencePiece tokenisation with T5's EOS, padding and truncation rules."""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm

from synthaug.text_encoder import Tokenizer, train_tokenizer


def test_special_ids_and_vocab(spiece_path):
    tok = Tokenizer(spiece_path)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    assert tok.max_length == 128
    sp = spm.SentencePieceProcessor(model_file=str(spiece_path))
    assert tok.vocab_size == sp.GetPieceSize() <= 48
    assert sp.IdToPiece(1) == "</s>" and sp.unk_id() == 2 and sp.bos_id() == -1


def test_ids_eos_padding_and_mask(spiece_path):
    tok = Tokenizer(spiece_path, max_length=12)
    sp = spm.SentencePieceProcessor(model_file=str(spiece_path))
    texts = ["three", "a photo of a goldfish", ""]
    ids, mask = tok(texts)
    assert ids.shape == mask.shape == (3, 12)
    assert ids.dtype == np.int32 and mask.dtype == bool
    for row, m, text in zip(ids, mask, texts, strict=True):
        pieces = sp.EncodeAsIds(text)
        n = min(len(pieces) + 1, 12)
        assert m.sum() == n and m[:n].all()  # mask covers pieces and EOS, contiguous
        assert row[n - 1] == 1  # EOS last
        assert (row[n:] == 0).all()  # padded with pad id
        if len(pieces) + 1 <= 12:
            assert row[: n - 1].tolist() == pieces
            assert tok.decode(row) == text
    assert ids[2, 0] == 1 and mask[2].sum() == 1  # empty text: EOS only


def test_truncation_keeps_eos(spiece_path):
    tok = Tokenizer(spiece_path, max_length=5)
    text = "a hammerhead shark and a tiger shark near the reef"
    full = tok.encode(text)
    assert len(full) > 5 and full[-1] == 1
    ids, mask = tok([text])
    assert mask.all()
    assert ids[0].tolist() == full[:4] + [1]


def test_errors(tmp_path, spiece_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer(tmp_path / "spiece.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"this is not a sentencepiece model" * 10)
    with pytest.raises(ValueError, match="is not a SentencePiece model"):
        Tokenizer(bad)
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer(spiece_path, max_length=1)
    tok = Tokenizer(spiece_path)
    with pytest.raises(TypeError, match="single str"):
        tok("three")
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer(["", " "], tmp_path / "x.model")


def test_fingerprint_identifies_the_model(tmp_path, spiece_path):
    a = Tokenizer(spiece_path).fingerprint
    assert a == Tokenizer(spiece_path, max_length=8).fingerprint
    other = train_tokenizer(
        ["completely different words here"], tmp_path / "o.model", vocab_size=20
    )
    assert Tokenizer(other).fingerprint != a


def test_matches_transformers_t5_tokenizer(fixtures_dir):
    """ids and masks equal those of transformers.T5Tokenizer on the committed spiece.model."""
    import json

    ref = json.loads((fixtures_dir / "t5_tokenizer.json").read_text())
    tok = Tokenizer(fixtures_dir / "spiece.model", max_length=ref["max_length"])
    ids, mask = tok(ref["texts"])
    np.testing.assert_array_equal(ids, np.array(ref["input_ids"], np.int32))
    np.testing.assert_array_equal(mask, np.array(ref["attention_mask"], bool))
    assert (~mask).any() and mask.all(axis=1).any()  # both padding and truncation occur
