"""Honest consumers: homes around towns or near a border, households sharing a phone, and
neighbours or colleagues sharing an IP behind one router."""

from __future__ import annotations

import numpy as np

from benchmarks.world.builder import MEMBER_P, Builder
from benchmarks.world.geometry import Bools, Floats, inside_near_edge, scatter, uniform_inside
from benchmarks.world.honest import expected_scans_per_code
from benchmarks.world.records import Consumer, Distributor, Trait

MAX_HONEST_CODES = 30  # distinct codes of honest scans per phone
BORDER_BAND_KM = (0.5, 3.0)
HOUSEHOLD_SIZES = (2, 3)  # people sharing one phone
ROUTER_SIZES = (2, 8)  # people sharing one public IP


def add_consumers(b: Builder) -> None:
    """Consumers at home around towns, more where territories are larger; the city is dense."""
    rng, params = b.rng, b.params
    for d in b.distributors[:-1]:
        count = int(rng.integers(2, 6))
        b.towns[d.distributor_id] = np.column_stack(uniform_inside(rng, d.territory, count))
    city_ring = np.array(b.city.territory.polygons[0][0][:-1])
    b.towns[b.city.distributor_id] = city_ring.mean(axis=0)[None, :]
    areas = np.array([d.territory.area_km2() for d in b.distributors[:-1]])
    weights = np.append(areas, 1.5 * areas.mean())
    homes = rng.choice(len(b.distributors), size=params.consumers, p=weights / weights.sum())
    activity = rng.lognormal(0.0, 0.8, size=params.consumers)
    codes_wanted = params.honest_scans / expected_scans_per_code(params)
    codes = np.clip(np.round(activity / activity.sum() * codes_wanted), 1, MAX_HONEST_CODES)
    for index, distributor in enumerate(b.distributors):
        mine = np.flatnonzero(homes == index)
        towns = b.towns[distributor.distributor_id]
        centres = towns[rng.integers(len(towns), size=mine.size)]
        spread = np.full(mine.size, 8.0 if distributor is b.city else 15.0)
        lon, lat = scatter(rng, distributor.territory, centres[:, 0], centres[:, 1], spread)
        border = rng.random(mine.size) < params.border_share
        if border.any():
            lon[border], lat[border] = inside_near_edge(
                rng, distributor.territory, int(border.sum()), *BORDER_BAND_KM
            )
        _settle(b, distributor, lon, lat, border, codes[mine].astype(int).tolist())


def _settle(
    b: Builder, distributor: Distributor, lon: Floats, lat: Floats, border: Bools, codes: list[int]
) -> None:
    """Consumers of one territory: households sharing a phone, groups behind one router, the
    rest on their own."""
    order = b.rng.permutation(lon.size).tolist()
    households, order = _groups(b, order, b.params.shared_phone_share * lon.size, HOUSEHOLD_SIZES)
    routers, alone = _groups(b, order, b.params.nat_share * lon.size, ROUTER_SIZES)

    def add(
        person: int, at: int, device: str, member: str | None, ip: str, trait: Trait | None
    ) -> None:
        traits = {trait} if trait else set()
        if border[at]:
            traits.add(Trait.BORDER)
        if b.rng.random() < b.params.repeat_scanner_share:
            traits.add(Trait.REPEAT)
        consumer = Consumer(
            b.new_id("consumer"),
            distributor.distributor_id,
            float(lon[at]),
            float(lat[at]),
            device,
            member,
            ip,
            frozenset(traits),
        )
        b.consumers.append(consumer)
        b.honest_codes.append(codes[person])
        b.load[device] += codes[person]

    for household in households:
        device, ip, at = b.new_id("dev"), b.new_ip(), household[0]
        _share_out(codes, household)
        for person in household:
            add(person, at, device, b.new_id("mem"), ip, Trait.SHARED_PHONE)
    for router in routers:
        ip = b.new_ip()
        for person in router:
            add(person, person, b.new_id("dev"), _member(b), ip, Trait.NAT)
    for person in alone:
        add(person, person, b.new_id("dev"), _member(b), b.new_ip(), None)


def _member(b: Builder) -> str | None:
    return b.new_id("mem") if b.rng.random() < MEMBER_P else None


def _groups(
    b: Builder, people: list[int], wanted: float, sizes: tuple[int, int]
) -> tuple[list[list[int]], list[int]]:
    """Groups of ``sizes[0]``-``sizes[1]`` people from the front of ``people`` until about
    ``wanted`` are in one; the groups and the people left."""
    groups: list[list[int]] = []
    taken = 0
    while taken < round(wanted) and len(people) - taken >= sizes[0]:
        size = min(int(b.rng.integers(sizes[0], sizes[1] + 1)), len(people) - taken)
        groups.append(people[taken : taken + size])
        taken += size
    return groups, people[taken:]


def _share_out(codes: list[int], household: list[int]) -> None:
    """A household's phone scans no more honest codes than one person's may."""
    total = sum(codes[person] for person in household)
    if total > MAX_HONEST_CODES:
        for person in household:
            codes[person] = max(1, codes[person] * MAX_HONEST_CODES // total)
