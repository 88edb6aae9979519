"""A consumer scan as the client sent it, validated (by ``ingest.http.scan_body``), as the scan
path takes it."""

from __future__ import annotations

from typing import NamedTuple

from rewards.member_token import TokenState

MAX_CODE_LENGTH = 512  # a Digital Link URL with a long resolver host
MAX_ID_LENGTH = 64
MAX_ACCURACY_M = 100_000.0


class ScanRequest(NamedTuple):  # a tuple: built once per scan, at a third of a dataclass's cost
    code: str
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    member_id: str
    """The member a valid member token names; without a token, the ``member_id`` sent; ''
    for none, and for a token that is not valid (the scan is then anonymous)."""
    member_token: TokenState
    device_id: str
    scan_id: str | None
    client_time_ms: int
    ip: str
    received_ns: int
