"""Member tiers in Redis, as commands (no I/O): ``{members:N}:tiers`` hashes, member id -> tier,
in ``PARTITIONS`` slots. A member never given a tier is tier 0."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence

from rewards.errors import MemberError

PARTITIONS = 4
MAX_ID_LENGTH = 64  # as a scan's member_id

Command = tuple[str, ...]


def check_member_id(member_id: str) -> str:
    if not 1 <= len(member_id) <= MAX_ID_LENGTH or not member_id.isprintable():
        raise MemberError(f"a member id is 1 to {MAX_ID_LENGTH} printable characters")
    return member_id


def check_tier(tier: object, tiers: int) -> int:
    if not isinstance(tier, int) or isinstance(tier, bool) or not 0 <= tier < tiers:
        raise MemberError(f"unknown tier {tier!r}; tiers are 0 to {tiers - 1}", "unknown_tier")
    return tier


def tiers_key(member_id: str) -> str:
    return f"{{members:{zlib.crc32(member_id.encode()) % PARTITIONS}}}:tiers"


def set_tier(member_id: str, tier: int) -> Command:
    return ("HSET", tiers_key(member_id), member_id, str(tier))


def get_tier(member_id: str) -> Command:
    return ("HGET", tiers_key(member_id), member_id)


class TierReads:
    """The tiers of many members in one HMGET per partition."""

    def __init__(self, member_ids: Sequence[str]) -> None:
        by_key: dict[str, list[str]] = defaultdict(list)
        for member_id in dict.fromkeys(member_ids):
            by_key[tiers_key(member_id)].append(member_id)
        self._members = list(by_key.items())

    def commands(self) -> list[Command]:
        return [("HMGET", key, *members) for key, members in self._members]

    def tiers(self, replies: Sequence[object]) -> dict[str, int]:
        """Each member's tier from the replies of ``commands`` (0 where none is stored)."""
        found: dict[str, int] = {}
        for (_, members), reply in zip(self._members, replies, strict=True):
            assert isinstance(reply, list)
            for member_id, tier in zip(members, reply, strict=True):
                found[member_id] = int(tier) if tier is not None else 0
        return found
