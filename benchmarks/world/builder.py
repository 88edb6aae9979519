"""The mutable state a world is built in, and the scan drafts it collects."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from benchmarks.world.geometry import Floats, Territory
from benchmarks.world.params import WorldParams
from benchmarks.world.records import (
    BatchPlan,
    CodeForm,
    CodeRef,
    Consumer,
    Distributor,
    Forged,
    Label,
    SetupStep,
    Trait,
)

IP_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")  # benchmarking addresses: never routed here
DAY_S = 86_400.0
# Distinct codes one phone scans in the day, whatever it scans, under the farm rule's 60 an hour:
# the evaluation plays the whole day in minutes, so the rule's hour sees the whole day.
MAX_CODES_PER_PHONE = 40
NO_LOCATION_P = 0.03
MEMBER_P = 0.7


@dataclass
class Draft:
    """A scan before its true point and GPS fix are drawn."""

    t_s: float
    label: Label
    actor: str
    ip: str
    code: CodeRef | Forged | str
    form: CodeForm
    device_id: str | None
    member_id: str | None
    origin: tuple[float, float] | None  # (lon, lat) the true point is drawn around; None: none
    within: str | None  # the distributor whose territory holds the true point
    spread_km: float
    clone_index: int | None = None
    traits: frozenset[Trait] = frozenset()


@dataclass
class Builder:
    rng: np.random.Generator
    params: WorldParams
    distributors: list[Distributor]
    addresses: Iterator[int]  # offsets into IP_NETWORK, each used once
    consumers: list[Consumer] = field(default_factory=list)
    honest_codes: list[int] = field(default_factory=list)  # per consumer
    load: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # codes per phone
    towns: dict[str, Floats] = field(default_factory=dict)
    pools: dict[str, list[CodeRef]] = field(default_factory=dict)  # shipped, not yet scanned
    diverted_units: list[list[CodeRef]] = field(default_factory=list)
    setup: list[SetupStep] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @cached_property
    def territory(self) -> dict[str, Territory]:
        return {d.distributor_id: d.territory for d in self.distributors}

    @property
    def city(self) -> Distributor:
        return self.distributors[-1]

    def new_id(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}-{self.counters[prefix]:05d}"

    def new_ip(self) -> str:
        return str(IP_NETWORK.network_address + next(self.addresses))

    def take(self, distributor_id: str, count: int) -> list[CodeRef]:
        pool = self.pools[distributor_id]
        if len(pool) < count:
            raise RuntimeError(f"the supply of {distributor_id} ran out")  # a bug, not input
        taken = pool[len(pool) - count :]
        del pool[len(pool) - count :]
        return taken

    def quantity(self, batch: str) -> int:
        return next(s.quantity for s in self.setup if isinstance(s, BatchPlan) and s.name == batch)

    def form(self) -> CodeForm:
        """Most people scan the QR code; some type the code printed under it."""
        draw = self.rng.random()
        return CodeForm.URL if draw < 0.85 else CodeForm.BARE if draw < 0.95 else CodeForm.TYPED


def has_room(b: Builder, consumer: Consumer, codes: int) -> bool:
    return b.load[consumer.device_id] + codes <= MAX_CODES_PER_PHONE


class Place(NamedTuple):
    """Where a scan's true point is drawn: around (lon, lat), inside ``within``'s territory."""

    lon: float
    lat: float
    within: str  # a distributor id
    spread_km: float


def home(consumer: Consumer) -> Place:
    return Place(consumer.lon, consumer.lat, consumer.distributor_id, 1.0)


def person_scan(
    b: Builder,
    consumer: Consumer,
    code: CodeRef,
    t_s: float,
    label: Label,
    form: CodeForm,
    *,
    located: bool | None = None,
    place: Place | None = None,
    traits: frozenset[Trait] = frozenset(),
) -> Draft:
    """A scan by a consumer, at or near home unless ``place`` says otherwise; ``located`` None:
    a few scans come without a fix."""
    if located is None:
        located = b.rng.random() >= NO_LOCATION_P
    where = place or home(consumer)
    return Draft(
        t_s,
        label,
        consumer.device_id,
        consumer.ip,
        code,
        form,
        consumer.device_id,
        consumer.member_id,
        (where.lon, where.lat) if located else None,
        where.within,
        where.spread_km,
        traits=traits,
    )
