"""Signed member tokens: a brand's word that a scan's member is who the client says.

Member ids come from clients, so anyone can send fresh ones. A brand's app or mini program gets
instead a token from the brand's backend, which shares a secret with scanward::

    v1.<member id>.<expiry>.<mac>

the member id in UTF-8 as base64url without padding, the expiry in Unix seconds, and the
HMAC-SHA256 under the secret of the text before the last dot (``v1.<member id>.<expiry>``), as
base64url without padding. Every part is URL-safe, so a token rides in a query string. A token
lives at most ``MAX_LIFETIME_S``. Two secrets may be valid at once (current and previous), so a
brand rotates without a gap: tokens are issued with the first and accepted with either.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from enum import Enum

from rewards.errors import MemberError
from rewards.members import MAX_ID_LENGTH, check_member_id

VERSION = "v1"
MAX_LIFETIME_S = 7 * 86_400
CLOCK_SKEW_S = 300
"""How far ahead of ours a brand's clock may be when it issues a token of the longest life."""
MIN_SECRET_BYTES = 32
MAX_SECRETS = 2
_MAX_ID_TEXT = -(-MAX_ID_LENGTH * 4 * 4 // 3)  # base64 of the longest UTF-8 member id
_MAX_EXPIRY_DIGITS = 12
_MAC_TEXT = 43  # base64 of 32 bytes without padding: its last character holds 4 bits
MAX_TOKEN_LENGTH = len(VERSION) + _MAX_ID_TEXT + _MAX_EXPIRY_DIGITS + _MAC_TEXT + 3
_SHAPE = re.compile(
    rf"{VERSION}\.([A-Za-z0-9_-]{{2,{_MAX_ID_TEXT}}})"
    rf"\.([1-9][0-9]{{0,{_MAX_EXPIRY_DIGITS - 1}}})"
    rf"\.([A-Za-z0-9_-]{{{_MAC_TEXT - 1}}}[AEIMQUYcgkosw048])"
)


class Refusal(Enum):
    """Why a token names no member."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    TOO_LONG_LIVED = "too_long_lived"


class TokenState(Enum):
    """What a scan's member token showed; a campaign that requires one reads it, and a scan
    it kept out of a draw is told the value."""

    VALID = "valid"
    MISSING = "member_token_missing"
    INVALID = "member_token_invalid"
    EXPIRED = "member_token_expired"

    @classmethod
    def of(cls, checked: str | Refusal) -> TokenState:
        """The state of a token that ``MemberTokenSecret.verify`` answered ``checked``."""
        if not isinstance(checked, Refusal):
            return cls.VALID
        return cls.EXPIRED if checked is Refusal.EXPIRED else cls.INVALID


class MemberTokenSecret:
    """The secrets a brand shares with scanward: the current one first, then the previous."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not 1 <= len(secrets) <= MAX_SECRETS:
            raise ValueError(
                f"give at least one and at most {MAX_SECRETS} secrets (current, previous)"
            )
        if any(len(secret.encode()) < MIN_SECRET_BYTES for secret in secrets):
            raise ValueError(f"each secret must be at least {MIN_SECRET_BYTES} bytes")
        self._keys = tuple(secret.encode() for secret in secrets)

    @classmethod
    def from_text(cls, text: str) -> MemberTokenSecret:
        """The secrets of a setting: comma-separated, current first."""
        return cls([part.strip() for part in text.split(",") if part.strip()])

    def __repr__(self) -> str:
        return f"MemberTokenSecret(<{len(self._keys)} secret(s)>)"

    def issue(self, member_id: str, expires_at: int) -> str:
        """A token for ``member_id`` until ``expires_at`` (Unix seconds), signed with the
        current secret."""
        check_member_id(member_id)
        if not 0 < expires_at < 10**_MAX_EXPIRY_DIGITS:
            raise MemberError("a token's expiry is a positive number of Unix seconds")
        signed = f"{VERSION}.{_b64(member_id.encode())}.{expires_at}"
        return f"{signed}.{_b64(_mac(self._keys[0], signed.encode()))}"

    def verify(self, token: str, now: float) -> str | Refusal:
        """The member id ``token`` names at ``now`` (Unix seconds), or why it names none."""
        shape = _SHAPE.fullmatch(token) if len(token) <= MAX_TOKEN_LENGTH else None
        if shape is None:
            return Refusal.MALFORMED
        signed, given = token[: shape.start(3) - 1].encode(), _unb64(shape.group(3))
        if not any(hmac.compare_digest(_mac(key, signed), given) for key in self._keys):
            return Refusal.BAD_SIGNATURE
        expires_at = int(shape.group(2))
        if expires_at <= now:
            return Refusal.EXPIRED
        if expires_at > now + MAX_LIFETIME_S + CLOCK_SKEW_S:
            return Refusal.TOO_LONG_LIVED
        try:
            member_id = _unb64(shape.group(1)).decode()
            return check_member_id(member_id)
        except (binascii.Error, UnicodeDecodeError, MemberError):  # signed, but not by our rules
            return Refusal.MALFORMED


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _unb64(text: str) -> bytes:
    """``text``, base64url without padding, decoded (binascii's own: about half base64's cost)."""
    return binascii.a2b_base64(text.encode().translate(_FROM_URLSAFE) + b"==")
