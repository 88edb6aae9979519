"""What devices and client IPs do over time: the device_farm and guessing rules.

Counters live in Redis, one small hash per actor under a few hash tags (which one, the caller
decides from a digest of the actor's name); ``velocity.lua`` updates them for a micro-batch and
replies with the counts, which the rules here turn into flags. Distinct codes and members are
counted exactly up to one past their limit, which is all the rules ask. A guesser past its
block limit is refused (429) for the cool-down without being counted further.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from codes.commands import LuaScript, ScriptCall
from fraud.policy import FraudPolicy

VELOCITY = LuaScript.load(__package__ or "fraud", "velocity.lua")
NO_MEMBER = bytes(8)

_KEEP_IDLE_S = 2 * 86_400  # an actor's counts cover at most a day; a block its cool-down
_OBSERVATION = struct.Struct("<BBQ8sH")
_COUNTS = struct.Struct("<IIII")


class ActorKind(IntEnum):
    DEVICE = 1
    IP = 2


class Observation(NamedTuple):
    """One scan as one actor (its device or its IP) made it."""

    kind: ActorKind
    actor: str
    invalid: bool  # the code failed verification: what guessers send
    serial: int  # 0 when the code did not verify
    member: bytes  # 8-byte digest of the member id, NO_MEMBER when none

    def pack(self) -> bytes:
        actor = self.actor.encode()
        fixed = _OBSERVATION.pack(self.kind, self.invalid, self.serial, self.member, len(actor))
        return fixed + actor


class ActorCounts(NamedTuple):
    blocked_s: int  # > 0: refused for this many more seconds, nothing counted
    codes_this_hour: int
    members_today: int
    invalid_this_window: int

    @classmethod
    def from_reply(cls, reply: bytes) -> ActorCounts:
        return cls(*_COUNTS.unpack(reply))


NOT_OBSERVED = ActorCounts(0, 0, 0, 0)


def count(
    tag: str, observations: Sequence[Observation], now_s: int, policy: FraudPolicy
) -> ScriptCall:
    """One script call for the observations of the actors under hash ``tag``, counted in
    order."""
    return ScriptCall(
        VELOCITY,
        (tag,),
        (
            now_s,
            policy.guess_window_s,
            policy.guess_block_device,
            policy.guess_block_ip,
            policy.guess_cooldown_s,
            policy.farm_codes_per_hour,
            policy.farm_members_per_day,
            _KEEP_IDLE_S,
            b"".join(o.pack() for o in observations),
        ),
    )


def velocity_flags(
    device: ActorCounts, ip: ActorCounts, policy: FraudPolicy
) -> list[dict[str, object]]:
    """``device_farm`` and ``guessing`` for one scan from its device's and IP's counts."""
    flags: list[dict[str, object]] = []
    if device.codes_this_hour > policy.farm_codes_per_hour:
        flags.append(_farm("codes_per_hour", device.codes_this_hour, policy.farm_codes_per_hour))
    elif device.members_today > policy.farm_members_per_day:
        flags.append(_farm("members_per_day", device.members_today, policy.farm_members_per_day))
    for actor, counts, limit in (
        ("device", device, policy.guess_flag_device),
        ("ip", ip, policy.guess_flag_ip),
    ):
        if counts.invalid_this_window > limit:
            flags.append(
                {
                    "flag": "guessing",
                    "actor": actor,
                    "invalid_codes": counts.invalid_this_window,
                    "limit": limit,
                    "window_s": policy.guess_window_s,
                }
            )
            break
    return flags


def _farm(reason: str, seen: int, limit: int) -> dict[str, object]:
    return {"flag": "device_farm", "reason": reason, "count": seen, "limit": limit}
