"""Errors of the codes layer.

Every failure to read or verify a code is a ``CodeError`` whose ``reason`` is one of the
counterfeit flags the scan path reports, so callers never need to parse messages.
"""

from __future__ import annotations

from typing import Literal

CodeRejection = Literal[
    "malformed", "bad_signature", "unknown_key", "unknown_serial", "gtin_mismatch"
]


class CodesError(Exception):
    """Base class of everything the codes package raises on purpose."""


class CodeError(CodesError):
    """A string is not a valid scanward code; ``reason`` says why."""

    def __init__(self, reason: CodeRejection, message: str) -> None:
        super().__init__(message)
        self.reason: CodeRejection = reason


class KeyringError(CodesError):
    """The keyring cannot be read, written or changed as asked."""


class BatchError(CodesError):
    """A batch request is invalid (bad GTIN, quantity out of range, serial space exhausted)."""
