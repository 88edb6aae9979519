"""The partition counts a store was set up with: recorded by the first process to start on it,
checked by every process after, so that a changed setting is a start-up error instead of codes
silently moving to other partitions (where their scan history and events are not).

``SET NX GET`` records and reads in one atomic command. A store holding scan state under the
tags used before the counts were recorded (``{scans:0}:events``) is refused too.
"""

from __future__ import annotations

from typing import cast

import orjson

from ingest.config import ConfigError
from ingest.events.partitions import Partitions
from ingest.store.scripts import AsyncRedis, SyncRedis

LAYOUT_KEY = "scanward:partitions"
_EARLIER_STREAM = "{scans:0}:events"


class LayoutMismatch(ConfigError):
    """The settings' partition counts are not the store's."""


def _recorded(partitions: Partitions) -> bytes:
    return orjson.dumps(
        {"scan_partitions": partitions.scans, "actor_partitions": partitions.actors}
    )


def _check(stored: bytes | str | None, partitions: Partitions, where: str) -> None:
    if stored is None:
        return
    text = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
    try:
        recorded = orjson.loads(text)
    except orjson.JSONDecodeError:
        recorded = None  # not written by scanward: refused like other counts
    if recorded != orjson.loads(_recorded(partitions)):
        wanted = f"scan_partitions={partitions.scans} actor_partitions={partitions.actors}"
        raise LayoutMismatch(
            f"Redis at {where} was set up with {text}, the settings say {wanted}: "
            "use the stored counts (changing them needs a migration of the scan state)"
        )


def _refuse_earlier(where: str) -> None:
    raise LayoutMismatch(
        f"Redis at {where} holds scan state of a scanward that predates recorded partition "
        f"counts ({_EARLIER_STREAM}); its partitions cannot be read by this version"
    )


def check_layout(redis: SyncRedis, partitions: Partitions, where: str) -> None:
    """Records ``partitions`` in a new store or checks them against the recorded ones."""
    if redis.get(LAYOUT_KEY) is None and redis.exists(_EARLIER_STREAM):
        _refuse_earlier(where)
    stored = redis.set(LAYOUT_KEY, _recorded(partitions), nx=True, get=True)
    _check(cast(bytes | None, stored), partitions, where)


async def check_layout_async(redis: AsyncRedis, partitions: Partitions, where: str) -> None:
    """``check_layout`` for an asyncio client."""
    if await redis.get(LAYOUT_KEY) is None and await redis.exists(_EARLIER_STREAM):
        _refuse_earlier(where)
    stored = await redis.set(LAYOUT_KEY, _recorded(partitions), nx=True, get=True)
    _check(cast(str | bytes | None, stored), partitions, where)
