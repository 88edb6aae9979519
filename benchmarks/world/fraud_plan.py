"""The fraud to come: who owns the cloned codes, where farms sit, where diverted cases go."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.world.builder import Builder, has_room
from benchmarks.world.geometry import Floats, haversine_km, uniform_inside
from benchmarks.world.records import Consumer

DIVERTED_MIN_KM = 100.0
CLONE_MIN_KM = 100.0


@dataclass(frozen=True, slots=True)
class Clone:
    owner: Consumer
    points: Floats  # (k, 2) lon, lat of the clone scans, far from each other and the owner


@dataclass(frozen=True, slots=True)
class AddressFarm:
    """One address sending valid codes with ids of its choosing: fresh ones, or none."""

    distributor_id: str
    lon: float
    lat: float
    fresh_devices: bool  # False: no device id and no location


@dataclass(frozen=True, slots=True)
class Diversion:
    shipped_to: str
    consumers: list[Consumer]


@dataclass(frozen=True, slots=True)
class Farm:
    distributor_id: str
    lon: float
    lat: float
    codes: int
    members: int


def plan_clones(b: Builder) -> list[Clone]:
    """Owners (not in the small city) with room for 2-6 clone scans far apart in their territory."""
    clones: list[Clone] = []
    for index in b.rng.permutation(len(b.consumers)):
        if len(clones) == b.params.clones:
            break
        owner = b.consumers[int(index)]
        if owner.distributor_id == b.city.distributor_id or not has_room(b, owner, 1):
            continue
        points = _far_points(b, owner, int(b.rng.integers(3, 7)))
        if len(points) >= 2:
            clones.append(Clone(owner, points))
            b.load[owner.device_id] += 1
    return clones


def _far_points(b: Builder, owner: Consumer, count: int) -> Floats:
    """Up to ``count`` points of the owner's territory, far from each other and from home."""
    lon, lat = uniform_inside(b.rng, b.territory[owner.distributor_id], 200)
    chosen = [(owner.lon, owner.lat)]
    for x, y in zip(lon, lat, strict=True):
        others = np.array(chosen)
        gaps = haversine_km(others[:, 0], others[:, 1], np.array(x), np.array(y))
        if gaps.min() >= CLONE_MIN_KM + 10:  # + 10 km: room for the scatter around each point
            chosen.append((float(x), float(y)))
            if len(chosen) > count:
                break
    return np.array(chosen[1:]).reshape(-1, 2)


def plan_farms(b: Builder) -> list[Farm]:
    farms = []
    for number in range(b.params.farms):
        distributor_id, lon, lat = _some_town(b)
        members = 1 if number == 0 else int(b.rng.integers(8, 31))
        codes = int(b.rng.integers(150, 401))
        farms.append(Farm(distributor_id, lon, lat, codes, members))
    return farms


def plan_address_farms(b: Builder) -> list[AddressFarm]:
    """At a town of some territory; every other one sends no device id."""
    return [AddressFarm(*_some_town(b), n % 2 == 0) for n in range(b.params.address_farms)]


def _some_town(b: Builder) -> tuple[str, float, float]:
    """A town of a territory drawn at random: its distributor, longitude and latitude."""
    distributor = b.distributors[int(b.rng.integers(len(b.distributors)))]
    towns = b.towns[distributor.distributor_id]
    lon, lat = towns[int(b.rng.integers(len(towns)))]
    return distributor.distributor_id, float(lon), float(lat)


def plan_diversions(b: Builder) -> list[Diversion]:
    """For each diverted case: where it is shipped, and 1-4 neighbours far away who scan it."""
    lon = np.array([c.lon for c in b.consumers])
    lat = np.array([c.lat for c in b.consumers])
    distance = {d.distributor_id: d.territory.outside_km(lon, lat) for d in b.distributors}
    upc = b.params.units_per_case
    diversions = []
    for _ in range(b.params.diverted_cases):
        shipped_to = b.distributors[int(b.rng.integers(len(b.distributors)))].distributor_id
        phones = {  # one buyer per phone: a shared phone has room for one case
            b.consumers[i].device_id: b.consumers[i]
            for i in np.flatnonzero(distance[shipped_to] >= DIVERTED_MIN_KM)
            if has_room(b, b.consumers[i], upc)
        }
        far = list(phones.values())
        if not far:
            raise ValueError("no consumer lives far enough from a distributor to divert to")
        region = far[int(b.rng.integers(len(far)))].distributor_id
        local = [c for c in far if c.distributor_id == region]
        size = min(len(local), int(b.rng.integers(1, 5)))
        chosen = [local[int(i)] for i in b.rng.choice(len(local), size=size, replace=False)]
        for consumer in chosen:
            b.load[consumer.device_id] += upc
        diversions.append(Diversion(shipped_to, chosen))
    return diversions
