"""What devices and client addresses do over time: the device_farm, address_farm and guessing
rules, and the daily ceiling of scans per address.

Counters live in Redis, one small hash per actor under a few hash tags (which one, the caller
decides from a digest of the actor's name); ``velocity.lua`` updates them for a micro-batch and
replies with the counts, which the rules here turn into flags. Distinct codes, members and
devices are counted exactly up to one past their limit, which is all the rules ask. Invalid
codes are counted in a sliding window (this window plus the share of the last one still within
it), so no boundary lets twice the limit through. A guesser past its block limit is refused
(429) for the cool-down, an address past its daily ceiling until the UTC day ends, without
being counted further: what an address can make Redis keep is bounded by that ceiling.

Device and member ids come from clients, so the address rules do not trust them: an address is
counted whatever ids it sends (fresh ids only raise its count of devices), and an IPv6 client
is counted by its /64, which one subscriber usually holds whole.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from codes.commands import LuaScript, ScriptCall
from fraud.policy import FraudPolicy
from fraud.verdicts import COUNTERFEIT_FLAGS

VELOCITY = LuaScript.load(__package__ or "fraud", "velocity.lua")
NO_MEMBER = bytes(8)
NO_DEVICE = bytes(4)
# what guessers send; a genuine code in a URL with the wrong GTIN is a fake label, not a guess
GUESS_FLAGS = frozenset(COUNTERFEIT_FLAGS) - {"gtin_mismatch"}

_KEEP_IDLE_S = 2 * 86_400  # an actor's counts cover at most a day; a block its cool-down
_OBSERVATION = struct.Struct("<BBQ8s4sH")
_COUNTS = struct.Struct("<IIIIIIIB")
_INVALID, _CHECK, _ADDRESS_BLOCKED = 1, 2, 4


class ActorKind(IntEnum):
    DEVICE = 1
    IP = 2


class Refusal(IntEnum):
    """Why an actor is refused, as velocity.lua replies it."""

    NONE = 0
    GUESSING = 1  # too many invalid codes: for the cool-down
    CEILING = 2  # an address's scans today: until the UTC day ends


class Observation(NamedTuple):
    """One scan (or one check of a code) as one actor, its device or its address, made it."""

    kind: ActorKind
    actor: str  # the device id, or ``address_actor`` of the client address
    invalid: bool  # the code failed verification: what guessers send
    serial: int  # 0 when the code did not verify
    member: bytes  # 8-byte digest of the member id, NO_MEMBER when none
    device: bytes = NO_DEVICE  # 4-byte digest of the device id the address saw, if any
    check: bool = False  # a check of a code (GET /v1/codes): counts only toward guessing
    # a device's, behind an address blocked for guessing: only its guessing counts are updated,
    # and only if Redis has it already (a blocked address cannot make Redis keep more)
    address_blocked: bool = False

    def pack(self) -> bytes:
        actor = self.actor.encode()
        bits = (
            (_INVALID if self.invalid else 0)
            | (_CHECK if self.check else 0)
            | (_ADDRESS_BLOCKED if self.address_blocked else 0)
        )
        fixed = _OBSERVATION.pack(
            self.kind, bits, self.serial, self.member, self.device, len(actor)
        )
        return fixed + actor


class ActorCounts(NamedTuple):
    blocked_s: int  # > 0: refused for this many more seconds, nothing counted
    codes_this_hour: int  # a device's
    members_today: int  # a device's
    invalid_this_window: int  # sliding
    valid_today: int = 0  # an address's valid scans this UTC day
    without_device_today: int = 0  # ... of them without a device id
    devices_today: int = 0  # ... distinct devices with a valid scan there
    refusal: Refusal = Refusal.NONE

    @classmethod
    def from_reply(cls, reply: bytes) -> ActorCounts:
        blocked, codes, members, invalid, valid, without_device, devices, refusal = _COUNTS.unpack(
            reply
        )
        return cls(
            blocked, codes, members, invalid, valid, without_device, devices, Refusal(refusal)
        )


NOT_OBSERVED = ActorCounts(0, 0, 0, 0)


def address_actor(address: str) -> str:
    """What a client address is counted as: an IPv4 address itself, an IPv6 one by its /64
    (a subscriber gets a /64 or more, so single addresses would cost nothing to change)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


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
            policy.address_max_scans_per_day,
            policy.address_flag_devices_per_day,
            1 if policy.guess_ip_block == "new_devices" else 0,
            b"".join(o.pack() for o in observations),
        ),
    )


def velocity_flags(
    device: ActorCounts, ip: ActorCounts, policy: FraudPolicy
) -> list[dict[str, object]]:
    """``device_farm``, ``address_farm`` and ``guessing`` for one scan from its device's and
    address's counts."""
    flags: list[dict[str, object]] = []
    if device.codes_this_hour > policy.farm_codes_per_hour:
        flags.append(_farm("device_farm", "codes_per_hour", device, policy))
    elif device.members_today > policy.farm_members_per_day:
        flags.append(_farm("device_farm", "members_per_day", device, policy))
    if ip.valid_today > policy.address_flag_valid_per_day:
        flags.append(_farm("address_farm", "valid_scans_per_day", ip, policy))
    elif ip.devices_today > policy.address_flag_devices_per_day:
        flags.append(_farm("address_farm", "devices_per_day", ip, policy))
    elif ip.without_device_today > policy.address_flag_no_device_per_day:
        flags.append(_farm("address_farm", "scans_without_device_per_day", ip, policy))
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


_FARM_COUNTS = {  # reason: the count and the limit it is held to
    "codes_per_hour": ("codes_this_hour", "farm_codes_per_hour"),
    "members_per_day": ("members_today", "farm_members_per_day"),
    "valid_scans_per_day": ("valid_today", "address_flag_valid_per_day"),
    "devices_per_day": ("devices_today", "address_flag_devices_per_day"),
    "scans_without_device_per_day": ("without_device_today", "address_flag_no_device_per_day"),
}


def _farm(flag: str, reason: str, counts: ActorCounts, policy: FraudPolicy) -> dict[str, object]:
    count, limit = _FARM_COUNTS[reason]
    return {
        "flag": flag,
        "reason": reason,
        "count": getattr(counts, count),
        "limit": getattr(policy, limit),
    }
