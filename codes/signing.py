"""The code layout and its HMAC tag.

A code is 100 bits, ``key id (4) | serial (40) | tag (56)``; the tag is
HMAC-SHA256(batch key, key id || serial) truncated to 56 bits.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

import numpy as np

from codes import crockford
from codes.errors import CodeError

KEY_ID_BITS = 4
SERIAL_BITS = 40
TAG_BITS = 56
KEY_ID_SHIFT = SERIAL_BITS + TAG_BITS
MAX_KEY_ID = (1 << KEY_ID_BITS) - 1
MAX_SERIAL = (1 << SERIAL_BITS) - 1
_TAG_MASK = (1 << TAG_BITS) - 1
_TAG_BYTES = TAG_BITS // 8
_SERIAL_BYTES = SERIAL_BITS // 8
_MESSAGE_BYTES = 1 + _SERIAL_BYTES
_SHA256_BLOCK = 64


class Code(NamedTuple):
    key_id: int
    serial: int
    tag: int

    @property
    def value(self) -> int:
        return (self.key_id << KEY_ID_SHIFT) | (self.serial << TAG_BITS) | self.tag

    def __str__(self) -> str:
        return crockford.encode(self.value)


def parse(text: str) -> Code:
    """Split a code into its fields; the signature is not checked here."""
    value = crockford.decode(text)
    if value is None:
        raise CodeError("malformed", "a code is 20 characters of Crockford base32")
    return Code(value >> KEY_ID_SHIFT, (value >> TAG_BITS) & MAX_SERIAL, value & _TAG_MASK)


class Signer:
    """Signs and checks the codes of one batch.

    HMAC is computed from SHA-256 states that already absorbed the padded key, as RFC 2104
    allows: half the compressions of ``hmac.digest``, which also re-fetches the digest from
    OpenSSL on every call (measured 1.3 µs against 3.2 µs per code here).
    """

    __slots__ = ("_inner", "_outer", "key_id")

    def __init__(self, batch_key: bytes, key_id: int) -> None:
        if len(batch_key) > _SHA256_BLOCK:
            raise ValueError("batch keys are at most one SHA-256 block long")
        padded = batch_key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self.key_id = key_id

    def sign(self, serial: int) -> Code:
        return parse(self.sign_range(serial, 1).decode())

    def matches(self, value: int) -> bool:
        """Whether the 100-bit code ``value`` carries this batch's tag (its key id included).

        The HMAC steps are written out here and in ``sign_range``: this runs once per scan,
        where a helper call would cost a tenth of the whole verification.
        """
        signed = value >> TAG_BITS  # key id and serial: the signed message as a 44-bit number
        if signed >> SERIAL_BITS != self.key_id:
            return False
        inner = self._inner.copy()
        inner.update(signed.to_bytes(_MESSAGE_BYTES))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return hmac.compare_digest(
            outer.digest()[:_TAG_BYTES], (value & _TAG_MASK).to_bytes(_TAG_BYTES)
        )

    def sign_range(self, first_serial: int, count: int) -> bytes:
        """The canonical text of ``count`` consecutive codes, 20 ASCII bytes each, back to back.

        Only the HMAC runs once per code in Python; layout and encoding are vectorised.
        """
        serials = np.arange(first_serial, first_serial + count, dtype=np.uint64)
        messages = np.empty((count, _MESSAGE_BYTES), dtype=np.uint8)
        messages[:, 0] = self.key_id
        messages[:, 1:] = (
            serials.astype(">u8").view(np.uint8).reshape(count, 8)[:, 8 - _SERIAL_BYTES :]
        )
        blob = messages.tobytes()
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        digests = []
        for start in range(0, len(blob), _MESSAGE_BYTES):
            inner = inner_copy()
            inner.update(blob[start : start + _MESSAGE_BYTES])
            outer = outer_copy()
            outer.update(inner.digest())
            digests.append(outer.digest()[:8])
        tags = np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64) >> np.uint64(8)
        high = serials | np.uint64(self.key_id << SERIAL_BITS)
        return crockford.encode_many(high, tags, TAG_BITS)
