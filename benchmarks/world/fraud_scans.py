"""The scans of injected fraud: clones, farms, diverted cases, harvested codes, guessers,
addresses farming with ids of their choosing, and overscanned codes."""

from __future__ import annotations

import numpy as np

from benchmarks.world.builder import DAY_S, MEMBER_P, Builder, Draft, has_room, person_scan
from benchmarks.world.fraud_plan import AddressFarm, Clone, Diversion, Farm
from benchmarks.world.geometry import REGION
from benchmarks.world.records import CodeForm, CodeRef, Forged, Label
from benchmarks.world.supply import BOTTLES, CANS, UNSHIPPED
from codes import crockford, signing


def clone_scans(b: Builder, clones: list[Clone]) -> None:
    """The owner's genuine scan, then copies of its QR scanned far away within the hour."""
    for clone in clones:
        owner = clone.owner
        [code] = b.take(owner.distributor_id, 1)
        start = float(b.rng.uniform(0.0, DAY_S - 3600.0))
        scan = person_scan(b, owner, code, start, Label.CLONED, CodeForm.URL, located=True)
        scan.clone_index = 0
        b.drafts.append(scan)
        times = start + np.sort(b.rng.uniform(120.0, 3600.0, size=len(clone.points)))
        for number, ((lon, lat), t_s) in enumerate(zip(clone.points, times, strict=True), 1):
            device = b.new_id("dev")
            member = b.new_id("mem") if b.rng.random() < MEMBER_P else None
            b.drafts.append(
                Draft(
                    float(t_s),
                    Label.CLONED,
                    device,
                    b.new_ip(),
                    code,
                    CodeForm.URL,
                    device,
                    member,
                    (float(lon), float(lat)),
                    owner.distributor_id,
                    0.5,
                    clone_index=number,
                )
            )


def farm_scans(b: Builder, farms: list[Farm]) -> None:
    """One device at one table, a genuine code every 5-25 s, member ids in turn."""
    for farm in farms:
        device, ip = b.new_id("dev"), b.new_ip()
        members = [b.new_id("mem") for _ in range(farm.members)]
        t_s = float(b.rng.uniform(0.0, DAY_S - 3 * 3600.0))
        for number, code in enumerate(b.take(farm.distributor_id, farm.codes)):
            t_s += float(b.rng.uniform(5.0, 25.0))
            member = members[number % len(members)]
            origin = (farm.lon, farm.lat)
            within = farm.distributor_id
            b.drafts.append(
                _at_a_table(t_s, Label.FARM, device, ip, code, device, member, origin, within)
            )


def address_farm_scans(b: Builder, farms: list[AddressFarm]) -> None:
    """One address, a valid code every 5-25 s, each with a fresh device and member id, or
    with neither device nor location."""
    for farm in farms:
        actor, ip = b.new_id("address-farm"), b.new_ip()
        t_s = float(b.rng.uniform(0.0, DAY_S - 3 * 3600.0))
        for code in b.take(farm.distributor_id, b.params.address_farm_codes):
            t_s += float(b.rng.uniform(5.0, 25.0))
            device = b.new_id("dev") if farm.fresh_devices else None
            member = b.new_id("mem") if farm.fresh_devices else None
            origin = (farm.lon, farm.lat) if farm.fresh_devices else None
            within = farm.distributor_id
            b.drafts.append(
                _at_a_table(
                    t_s, Label.ADDRESS_FARM, actor, ip, code, device, member, origin, within
                )
            )


def _at_a_table(
    t_s: float,
    label: Label,
    actor: str,
    ip: str,
    code: CodeRef,
    device: str | None,
    member: str | None,
    origin: tuple[float, float] | None,
    within: str,
) -> Draft:
    """A farm's scan of a QR code at one table (its true point within 20 m of ``origin``)."""
    return Draft(t_s, label, actor, ip, code, CodeForm.URL, device, member, origin, within, 0.02)


def overscanned_scans(b: Builder) -> None:
    """Each code scanned all day long, with no device and no location, from a fresh address
    every time: only the code's own count gives it away."""
    for number in range(b.params.overscanned_codes):
        distributor_id = b.distributors[number % len(b.distributors)].distributor_id
        [code] = b.take(distributor_id, 1)
        actor = b.new_id("overscanned")
        times = np.sort(b.rng.uniform(0.0, DAY_S, size=b.params.overscan_scans))
        for t_s in times.tolist():
            b.drafts.append(
                Draft(
                    t_s,
                    Label.OVERSCANNED,
                    actor,
                    b.new_ip(),
                    code,
                    CodeForm.URL,
                    None,
                    None,
                    None,
                    None,
                    0.0,
                )
            )


def diverted_scans(b: Builder, diversions: list[Diversion]) -> None:
    """About three quarters of the units of each diverted case, scanned at the buyers' homes."""
    for diversion, units in zip(diversions, b.diverted_units, strict=True):
        for unit in units:
            if b.rng.random() < 0.75:
                buyer = diversion.consumers[int(b.rng.integers(len(diversion.consumers)))]
                t_s = float(b.rng.uniform(0.0, DAY_S))
                scan = person_scan(b, buyer, unit, t_s, Label.DIVERTED, b.form(), located=True)
                b.drafts.append(scan)


def harvested_scans(b: Builder) -> None:
    """Codes of the never-shipped batch, each scanned once by some consumer at home."""
    indices = b.rng.permutation(b.quantity(UNSHIPPED))[: b.params.harvested_scans]
    people = list(b.consumers)
    for index in indices:
        while True:
            if not people:
                raise ValueError("too many harvested scans for the consumers")
            pick = int(b.rng.integers(len(people)))
            if has_room(b, people[pick], 1):
                break
            people.pop(pick)
        b.load[people[pick].device_id] += 1
        code, t_s = CodeRef(UNSHIPPED, int(index)), float(b.rng.uniform(0.0, DAY_S))
        b.drafts.append(person_scan(b, people[pick], code, t_s, Label.HARVESTED, b.form()))


def guesser_scans(b: Builder) -> None:
    """Bursts of invalid codes; odd-numbered guessers change device id on every attempt."""
    west, south, east, north = REGION
    for number in range(b.params.guessers):
        rotating = number % 2 == 1
        device, ip = b.new_id("dev"), b.new_ip()
        actor = b.new_id("guesser") if rotating else device
        attempts = int(b.rng.integers(150, 351) if rotating else b.rng.integers(20, 81))
        origin = None
        if b.rng.random() < 0.5:
            origin = (float(b.rng.uniform(west, east)), float(b.rng.uniform(south, north)))
        t_s = float(b.rng.uniform(0.0, DAY_S - 3600.0))
        for _ in range(attempts):
            t_s += float(b.rng.uniform(1.0, 8.0))
            code, form = _guess(b)
            sent_device = b.new_id("dev") if rotating else device
            draft = Draft(
                t_s, Label.GUESSING, actor, ip, code, form, sent_device, None, origin, None, 0.0
            )
            b.drafts.append(draft)


def _guess(b: Builder) -> tuple[Forged | str, CodeForm]:
    """40 % real serials with a bad signature, 40 % random codes, 20 % malformed."""
    draw = b.rng.random()
    if draw < 0.4:
        batch = BOTTLES if b.rng.random() < 0.5 else CANS
        index = int(b.rng.integers(b.quantity(batch)))
        forged = Forged(batch, index, int(b.rng.integers(1, 1 << signing.TAG_BITS)))
        return forged, CodeForm.URL if b.rng.random() < 0.5 else CodeForm.BARE
    alphabet = crockford.ALPHABET
    if draw < 0.8:
        return "".join(alphabet[i] for i in b.rng.integers(32, size=20)), CodeForm.BARE
    length = int(b.rng.choice([12, 16, 19, 21, 24]))
    text = "".join(alphabet[i] for i in b.rng.integers(32, size=length))
    return (text if b.rng.random() < 0.5 else text[:7] + "U" + text[8:]), CodeForm.BARE
