"""A scan's JSON fields read into a ``ScanRequest``, each checked, or a 422 naming the field.

A ``member_token`` (``rewards.member_token``) is verified here, once: when valid, its member is
the scan's (a different ``member_id`` beside it is a 422 ``member_mismatch``); when not, the scan
is anonymous, and the reward stage tells why it drew nothing."""

from __future__ import annotations

import time
from datetime import datetime

from ingest.errors import ValidationFailed
from ingest.http.request_body import JsonFields
from ingest.scan.request import MAX_ACCURACY_M, MAX_CODE_LENGTH, MAX_ID_LENGTH, ScanRequest
from rewards.member_token import MAX_TOKEN_LENGTH, MemberTokenSecret, Refusal, TokenState

_EARLIEST_CLIENT_TIME_MS = 946_684_800_000  # 2000-01-01
_LATEST_CLIENT_TIME_MS = 4_102_444_800_000  # 2100-01-01


def parse_scan(
    fields: JsonFields, ip: str, received_ns: int, token_secret: MemberTokenSecret | None
) -> ScanRequest:
    """The same rules for one scan and for each line of a bulk upload; member tokens are
    verified with ``token_secret`` (none: every token is invalid)."""
    code = fields.text("code", max_length=MAX_CODE_LENGTH)
    if not code.strip():
        raise ValidationFailed("code must not be empty")
    lat = fields.optional_number("lat", -90.0, 90.0)
    lon = fields.optional_number("lon", -180.0, 180.0)
    if (lat is None) != (lon is None):
        raise ValidationFailed("lat and lon go together: send both or neither")
    member_id, member_token = _member(fields, token_secret)
    scan = ScanRequest(
        code=code,
        lat=lat,
        lon=lon,
        accuracy_m=fields.optional_number("accuracy_m", 0.0, MAX_ACCURACY_M),
        member_id=member_id,
        member_token=member_token,
        device_id=fields.optional_text("device_id", max_length=MAX_ID_LENGTH) or "",
        scan_id=fields.optional_text("scan_id", max_length=MAX_ID_LENGTH) or None,
        client_time_ms=_client_time_ms(fields.optional_text("client_ts", max_length=40)),
        ip=ip,
        received_ns=received_ns,
    )
    fields.done()
    return scan


def _member(fields: JsonFields, secret: MemberTokenSecret | None) -> tuple[str, TokenState]:
    """The scan's member and what its member token showed."""
    member_id = fields.optional_text("member_id", max_length=MAX_ID_LENGTH) or ""
    token = fields.optional_text("member_token", max_length=MAX_TOKEN_LENGTH)
    if not token:
        return member_id, TokenState.MISSING
    checked = Refusal.BAD_SIGNATURE if secret is None else secret.verify(token, time.time())
    if isinstance(checked, Refusal):
        return "", TokenState.of(checked)
    if member_id and member_id != checked:
        raise ValidationFailed(
            "member_id differs from the member the member_token names: send only the token",
            "member_mismatch",
        )
    return checked, TokenState.VALID


def _client_time_ms(text: str | None) -> int:
    """Milliseconds since the epoch of an ISO-8601 time with a zone; 0 when none was sent."""
    if text is None:
        return 0
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            "client_ts must be an ISO-8601 time, e.g. 2027-06-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValidationFailed("client_ts must include a time zone (Z or +08:00)")
    millis = int(moment.timestamp() * 1000)
    if not _EARLIEST_CLIENT_TIME_MS <= millis < _LATEST_CLIENT_TIME_MS:
        raise ValidationFailed("client_ts must be between the years 2000 and 2100")
    return millis
