"""How the scan path answers scans that Redis could not take: a 503 with ``Retry-After``, never
a 500 and never a verdict it could not check. On a Redis Cluster only the scans whose keys live
on the failing primary are refused; the others are answered."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ingest.errors import Unavailable

_RETRY_AFTER_S = 2


def refusal(failure: Exception) -> Unavailable:
    """The answer to scans that met ``failure``, one of ``ingest.store.outage.STORE_FAILURES``."""
    if isinstance(failure, RedisTimeoutError):  # its scripts may or may not have run
        return Unavailable(
            "the scan state store did not answer in time; retry with the same scan_id",
            "outcome_unknown",
        )
    if isinstance(failure, RedisConnectionError):
        return Unavailable("the scan state store is unreachable; retry shortly")
    return Unavailable(
        "the part of the scan state store that holds this code is unavailable; retry shortly",
        retry_after_s=_RETRY_AFTER_S,
    )
