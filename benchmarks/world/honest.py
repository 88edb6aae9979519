"""The scans of honest consumers: at home, at a table with friends, or on a trip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.world.builder import DAY_S, Builder, Place, has_room, home, person_scan
from benchmarks.world.geometry import Floats, haversine_km, scatter
from benchmarks.world.params import WorldParams
from benchmarks.world.records import CodeRef, Consumer, Label, Trait

REPEAT_P = 0.15  # chance that a person scans the same code once more
REPEAT_SCANS = (3, 8)  # a repeat scanner's scans of each code
TABLE_PHONES = np.array([2, 3, 4, 5])
TABLE_PHONES_P = np.array([0.4, 0.3, 0.2, 0.1])
TABLE_MINUTES = 10.0  # the friends scan within this long after the owner
FRIENDS_WITHIN_KM = 30.0  # of the owner's home
TRIP_MIN_KM = 50.0  # a trip's destination lies at least this far outside the home territory
TRIP_HOURS = 6.0


def expected_scans_per_code(params: WorldParams) -> float:
    ordinary = 1 / (1 - REPEAT_P)
    repeated = sum(REPEAT_SCANS) / 2
    at_home = (1 - params.repeat_scanner_share) * ordinary + params.repeat_scanner_share * repeated
    phones = float(TABLE_PHONES @ TABLE_PHONES_P)
    return (1 - params.friends_share) * at_home + params.friends_share * phones


@dataclass(frozen=True, slots=True)
class _Trip:
    place: Place  # a town in another territory
    start_s: float
    codes: int  # the first this many of the consumer's codes go on the trip


def honest_scans(b: Builder) -> None:
    """Each consumer's codes: scanned at home, taken on a trip, or shared at a table."""
    trips = _plan_trips(b)
    for number, (consumer, count) in enumerate(zip(b.consumers, b.honest_codes, strict=True)):
        trip = trips.get(number)
        for position, code in enumerate(b.take(consumer.distributor_id, count)):
            if trip is not None and position < trip.codes:
                first = trip.start_s + float(b.rng.uniform(0.0, TRIP_HOURS * 3600))
                traits = consumer.traits | {Trait.TRAVELLER}
                _scans(b, consumer, code, first, trip.place, traits)
            elif b.rng.random() >= b.params.friends_share or not _table(b, consumer, code):
                _scans(b, consumer, code, float(b.rng.uniform(0.0, DAY_S)), home(consumer))


def _scans(
    b: Builder,
    consumer: Consumer,
    code: CodeRef,
    first: float,
    place: Place,
    traits: frozenset[Trait] | None = None,
) -> None:
    """One code's scans by its owner: once, some again within hours; a repeat scanner's 3-8
    times over the day."""
    if Trait.REPEAT in consumer.traits:
        again = int(b.rng.integers(REPEAT_SCANS[0], REPEAT_SCANS[1] + 1)) - 1
        later = b.rng.uniform(60.0, DAY_S / 2, size=again)
    else:
        again = int(b.rng.geometric(1 - REPEAT_P)) - 1
        later = b.rng.uniform(60.0, 4 * 3600.0, size=again)
    form = b.form()
    for t_s in [first, *np.sort(first + later)]:
        scan = person_scan(
            b,
            consumer,
            code,
            float(t_s),
            Label.HONEST,
            form,
            place=place,
            traits=consumer.traits if traits is None else traits,
        )
        b.drafts.append(scan)


def _table(b: Builder, owner: Consumer, code: CodeRef) -> bool:
    """The owner's scan at a table near home and the friends' right after, all at one point;
    False when no friend lives near enough with room for one more code."""
    friends = _friends(b, owner, int(b.rng.choice(TABLE_PHONES, p=TABLE_PHONES_P)) - 1)
    if not friends:
        return False
    lon, lat = scatter(b.rng, b.territory[owner.distributor_id], *_point(owner), np.array([2.0]))
    table = Place(float(lon[0]), float(lat[0]), owner.distributor_id, 0.0)
    start = float(b.rng.uniform(0.0, DAY_S))
    times = start + np.sort(b.rng.uniform(30.0, TABLE_MINUTES * 60, size=len(friends)))
    for friend in friends:
        b.load[friend.device_id] += 1
    for person, t_s in zip([owner, *friends], [start, *times], strict=True):
        traits = person.traits | {Trait.FRIENDS}
        scan = person_scan(
            b, person, code, float(t_s), Label.HONEST, b.form(), place=table, traits=traits
        )
        b.drafts.append(scan)
    return True


def _point(consumer: Consumer) -> tuple[Floats, Floats]:
    return np.array([consumer.lon]), np.array([consumer.lat])


def _friends(b: Builder, owner: Consumer, count: int) -> list[Consumer]:
    """Up to ``count`` consumers on other phones living near the owner, with room for a code."""
    nearby = [
        c
        for c in b.consumers
        if c.distributor_id == owner.distributor_id
        and c.device_id != owner.device_id
        and has_room(b, c, 1)
    ]
    if not nearby:
        return []
    lon, lat = np.array([c.lon for c in nearby]), np.array([c.lat for c in nearby])
    distance = haversine_km(lon, lat, *_point(owner))
    close = np.flatnonzero(distance <= FRIENDS_WITHIN_KM)
    chosen = b.rng.permutation(close)
    friends: list[Consumer] = []
    for index in chosen.tolist():
        if all(f.device_id != nearby[index].device_id for f in friends):
            friends.append(nearby[index])
        if len(friends) == count:
            break
    return friends


def _plan_trips(b: Builder) -> dict[int, _Trip]:
    """Consumers (by position) who take 1-3 of their codes on a trip, until about
    ``traveller_share`` of the honest codes travel."""
    wanted = round(b.params.traveller_share * sum(b.honest_codes))
    trips: dict[int, _Trip] = {}
    travelled = 0
    destinations: dict[str, list[Place]] = {}
    for number in b.rng.permutation(len(b.consumers)).tolist():
        if travelled >= wanted:
            break
        consumer = b.consumers[number]
        if consumer.distributor_id not in destinations:
            destinations[consumer.distributor_id] = _destinations(b, consumer.distributor_id)
        places = destinations[consumer.distributor_id]
        if not places:
            continue
        codes = min(b.honest_codes[number], int(b.rng.integers(1, 4)), wanted - travelled)
        place = places[int(b.rng.integers(len(places)))]
        start = float(b.rng.uniform(0.0, DAY_S - TRIP_HOURS * 3600))
        trips[number] = _Trip(place, start, codes)
        travelled += codes
    return trips


def _destinations(b: Builder, home_id: str) -> list[Place]:
    """Towns of other territories at least TRIP_MIN_KM outside the home territory."""
    places = []
    for distributor_id, towns in b.towns.items():
        if distributor_id == home_id:
            continue
        away = b.territory[home_id].outside_km(towns[:, 0], towns[:, 1])
        for (lon, lat), km in zip(towns.tolist(), away.tolist(), strict=True):
            if km >= TRIP_MIN_KM:
                places.append(Place(lon, lat, distributor_id, 5.0))
    return places
