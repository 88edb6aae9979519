"""Errors of the codes layer, and ``CodedError``, the base of every domain package's errors.

Every failure to read or verify a code is a ``CodeError`` whose ``reason`` (its ``code``) is one
of the counterfeit flags the scan path reports, so callers never need to parse messages.
"""

from __future__ import annotations

from typing import Literal

CodeRejection = Literal[
    "malformed", "bad_signature", "unknown_key", "unknown_serial", "gtin_mismatch"
]


class CodedError(Exception):
    """An error whose ``code`` names the case for machines (the API reports it as it is) while
    the message says it to people; each class names its code, which one error may replace."""

    code: str

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CodesError(CodedError):
    """Base class of everything the codes package raises on purpose."""


class CodeError(CodesError):
    """A string is not a valid scanward code; ``reason`` says why."""

    def __init__(self, reason: CodeRejection, message: str) -> None:
        super().__init__(message, reason)
        self.reason: CodeRejection = reason


class KeyringError(CodesError):
    """The keyring cannot be read, written or changed as asked."""

    code = "keyring"


class BatchError(CodesError):
    """A batch request is invalid (bad GTIN, quantity out of range, serial space exhausted)."""

    code = "validation_failed"


class BatchIdTaken(CodesError):
    """The batch id drawn for a new batch is taken: draw another."""

    code = "batch_id_taken"
