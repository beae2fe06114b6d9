"""TFRecord files and ``tf.train.Example`` records without TensorFlow.

The byte formats are TensorFlow's: a TFRecord file is a sequence of records, each

    uint64 length (little-endian) | uint32 masked CRC-32C of the length | data | uint32 masked
    CRC-32C of the data

and an Example is the protocol buffer ``Example{features: Features{feature: map<string,
Feature>}}`` with ``Feature`` one of ``bytes_list``, ``float_list`` or ``int64_list``. Files
written here are read by ``tf.data.TFRecordDataset`` and ``tf.io.parse_single_example``; files
TensorFlow writes are read here (both directions are tested against TensorFlow).

Importing TensorFlow takes many seconds; this module needs only NumPy, ``google-crc32c``
(Google's compiled CRC-32C, the checksum of the framing) and the standard library, so writing
synthetic shards, TensorBoard event files and reading a few records back do not pay for it.
The framing itself is a few lines (a length, two checksums); the checksum is the library's.
"""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Iterator, Mapping, Sequence

import google_crc32c
import numpy as np

__all__ = [
    "RecordWriter",
    "crc32c",
    "decode_example",
    "encode_example",
    "frame_record",
    "iter_records",
    "masked_crc32c",
]


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of ``data`` (``google_crc32c``, compiled)."""
    return google_crc32c.value(data)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked checksum: ``rotate_right(crc, 15) + 0xa282ead8`` (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record as it appears in a TFRecord file (length, checksums, data)."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (
            length,
            struct.pack("<I", masked_crc32c(length)),
            data,
            struct.pack("<I", masked_crc32c(data)),
        )
    )


class RecordWriter:
    """Writes a TFRecord file (uncompressed), like ``tf.io.TFRecordWriter``.

    Usable as a context manager; :meth:`close` flushes and closes the file.

    Args:
      path: the file to write.
      use_tensorflow: frame the records with ``tf.io.TFRecordWriter`` instead (the same
        bytes).
    """

    def __init__(self, path: str | os.PathLike, *, use_tensorflow: bool = False) -> None:
        self.path = pathlib.Path(path)
        if use_tensorflow:
            import tensorflow as tf

            self._tf_writer = tf.io.TFRecordWriter(str(self.path))
        else:
            self._tf_writer = None
        self._file = None if self._tf_writer is not None else open(self.path, "wb")  # noqa: SIM115

    def write(self, record: bytes) -> None:
        if self._tf_writer is not None:
            self._tf_writer.write(record)
        else:
            self._file.write(frame_record(record))

    def close(self) -> None:
        if self._tf_writer is not None:
            self._tf_writer.close()
        elif self._file is not None:
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: str | os.PathLike, *, verify: bool = True) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file, in order.

    Args:
      path: the file.
      verify: check both checksums of every record.

    Raises:
      ValueError: a truncated record or a checksum mismatch, naming the file and the offset.
    """
    with open(path, "rb") as f:
        offset = 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError(f"{path}: truncated record header at byte {offset}")
            length_bytes, (length_crc,) = head[:8], struct.unpack("<I", head[8:])
            (length,) = struct.unpack("<Q", length_bytes)
            if verify and masked_crc32c(length_bytes) != length_crc:
                raise ValueError(f"{path}: corrupt record length at byte {offset}")
            body = f.read(length + 4)
            if len(body) < length + 4:
                raise ValueError(f"{path}: truncated record at byte {offset}")
            data = body[:length]
            if verify and masked_crc32c(data) != struct.unpack("<I", body[length:])[0]:
                raise ValueError(f"{path}: checksum mismatch in the record at byte {offset}")
            yield data
            offset += 12 + length + 4


# -- protocol buffer wire format -------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 as two's complement, 10 bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pb_varint(field: int, value: int) -> bytes:
    """A varint field (int32, int64, uint64, bool, enum)."""
    return _varint(field << 3) + _varint(int(value))


def _pb_bytes(field: int, data: bytes) -> bytes:
    """A length-delimited field (bytes, string, embedded message, packed repeated)."""
    return _varint((field << 3) | 2) + _varint(len(data)) + data


def _pb_float(field: int, value: float) -> bytes:
    """A 32-bit ``float`` field."""
    return _varint((field << 3) | 5) + struct.pack("<f", value)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in a protocol buffer")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a serialised message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protocol buffer wire type {wire}")
        yield field, wire, value


# -- tf.train.Example -----------------------------------------------------------------------

FeatureValue = bytes | str | int | float | Sequence[bytes | str] | Sequence[int] | Sequence[float]


def _feature(name: str, value) -> bytes:
    values = list(value) if isinstance(value, list | tuple | np.ndarray) else [value]
    if not values:
        raise ValueError(f"feature {name!r}: an empty list has no type; give at least one value")
    if all(isinstance(v, bytes | str) for v in values):
        items = b"".join(_pb_bytes(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _pb_bytes(1, items)  # bytes_list
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        packed = b"".join(_varint(int(v)) for v in values)
        return _pb_bytes(3, _pb_bytes(1, packed))  # int64_list
    if all(isinstance(v, float | int | np.floating) for v in values):
        packed = struct.pack(f"<{len(values)}f", *values)
        return _pb_bytes(2, _pb_bytes(1, packed))  # float_list
    raise ValueError(
        f"feature {name!r}: expected bytes/str, ints or floats (one kind), got "
        f"{sorted({type(v).__name__ for v in values})}"
    )


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """A serialised ``tf.train.Example``.

    Args:
      features: name -> a value or a list of values: bytes or str (``bytes_list``), ints
        (``int64_list``) or floats (``float_list``).

    Returns:
      The bytes ``tf.train.Example(...).SerializeToString()`` gives (map entries in the given
      order).
    """
    entries = b"".join(
        _pb_bytes(1, _pb_bytes(1, name.encode()) + _pb_bytes(2, _feature(name, value)))
        for name, value in features.items()
    )
    return _pb_bytes(1, entries)


def _decode_feature(buf: bytes) -> list:
    for field, _, value in _fields(buf):
        if field == 1:  # bytes_list
            return [v for f, _, v in _fields(value) if f == 1]
        if field == 2:  # float_list; packed (n * 4 bytes) or one float per field (4 bytes)
            floats: list[float] = []
            for f, _, v in _fields(value):
                if f == 1:
                    floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
            return floats
        if field == 3:  # int64_list; packed or one varint per field
            ints: list[int] = []
            for f, w, v in _fields(value):
                if f == 1 and w == 0:
                    ints.append(v)
                elif f == 1:
                    pos = 0
                    while pos < len(v):
                        n, pos = _read_varint(v, pos)
                        ints.append(n)
            return [n - (1 << 64) if n >= 1 << 63 else n for n in ints]
    return []


def decode_example(record: bytes) -> dict[str, list]:
    """The features of a serialised ``tf.train.Example``: name -> list of values (bytes for
    ``bytes_list``, int for ``int64_list``, float for ``float_list``).

    Raises:
      ValueError: the bytes are not a protocol buffer.
    """
    out: dict[str, list] = {}
    for field, _, features in _fields(record):
        if field != 1:
            continue
        for f, _, entry in _fields(features):
            if f != 1:
                continue
            key, value = None, b""
            for ef, _, ev in _fields(entry):
                if ef == 1:
                    key = ev.decode()
                elif ef == 2:
                    value = ev
            if key is not None:
                out[key] = _decode_feature(value)
    return out
