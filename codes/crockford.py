"""Crockford base32 for fixed-width 100-bit codes.

Decoding goes through ``bytes.translate`` into Python's own base-32 digits and then
``int(s, 32)``, both implemented in C: several times cheaper than ``base64.b32decode``.  Every byte
outside the alphabet is translated to ``!`` so that ``int`` rejects it (``int`` would otherwise
accept signs, underscores and surrounding whitespace).

Encoding many codes at once is vectorised with numpy, one 5-bit digit position at a time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 20  # characters; 20 x 5 = 100 bits
_PYTHON_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_REJECT = b"!"


def _decode_table() -> tuple[bytes, bytes]:
    table = bytearray(_REJECT * 256)
    for value, char in enumerate(ALPHABET):
        table[ord(char)] = table[ord(char.lower())] = ord(_PYTHON_DIGITS[value])
    for alias, value in (("I", 1), ("L", 1), ("O", 0)):
        table[ord(alias)] = table[ord(alias.lower())] = ord(_PYTHON_DIGITS[value])
    return bytes(table), b"- "


_DECODE, _IGNORED = _decode_table()
_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)


def decode(text: str) -> int | None:
    """The 100-bit value of a code, or None if ``text`` is not 20 Crockford characters.

    Case, the look-alikes I, L (one) and O (zero), hyphens and spaces are tolerated.
    """
    # Bytes of non-ASCII characters translate to the reject mark like any other stranger.
    digits = text.encode("utf-8", "replace").translate(_DECODE, _IGNORED)
    if len(digits) != CODE_LENGTH:
        return None
    try:
        return int(digits, 32)
    except ValueError:
        return None


def encode(value: int) -> str:
    """The canonical 20-character form of one 100-bit value, two characters per lookup."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


_PAIRS = tuple(first + second for first in ALPHABET for second in ALPHABET)
_PAIR_SHIFTS = tuple(range(5 * CODE_LENGTH - 10, -1, -10))


def encode_many(high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64], low_bits: int) -> bytes:
    """Encode the values ``high * 2**low_bits + low`` (each below 2**100), vectorised.

    Returns the canonical characters of all codes back to back, 20 ASCII bytes per code.
    """
    digits = np.empty((low.shape[0], CODE_LENGTH), dtype=np.uint8)
    for position in range(CODE_LENGTH):
        shift = 5 * (CODE_LENGTH - 1 - position)
        if shift >= low_bits:
            digit = high >> np.uint64(shift - low_bits)
        elif shift + 5 <= low_bits:
            digit = low >> np.uint64(shift)
        else:  # this digit straddles the two halves
            digit = (low >> np.uint64(shift)) | (high << np.uint64(low_bits - shift))
        digits[:, position] = digit & np.uint64(31)
    return _ALPHABET_BYTES[digits].tobytes()
