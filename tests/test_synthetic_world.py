"""The synthetic world's ground truth, and the fraud evaluation's scoring and driving (no servers:
the driver runs against a small fake of the HTTP API)."""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from benchmarks import fraud_eval
from benchmarks.fraud_eval import (
    Outcome,
    address_over_threshold,
    evaluate,
    farm_over_threshold,
    overscan_over_threshold,
    predecessors,
    run_world,
)
from benchmarks.world import (
    CLONE_MIN_KM,
    DIVERTED_MIN_KM,
    IP_NETWORK,
    MAX_CODES_PER_PHONE,
    MAX_CODES_PER_SHIPMENT,
    REGION,
    Aggregation,
    CodeForm,
    CodeRef,
    CodeShipment,
    Consumer,
    Floats,
    Forged,
    Label,
    PlannedScan,
    RangeShipment,
    Territory,
    Trait,
    World,
    WorldParams,
    build_world,
    forge,
    haversine_km,
    ring_contains,
    ring_distance_km,
)
from benchmarks.world.honest import FRIENDS_WITHIN_KM, TRIP_MIN_KM
from codes import crockford, digital_link, signing
from fraud.policy import FraudPolicy

SMALL = WorldParams(
    distributors=6,
    consumers=200,
    honest_scans=1_500,
    diverted_cases=4,
    clones=5,
    guessers=2,
    farms=2,
    harvested_scans=30,
)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(7)


@pytest.fixture(scope="module")
def small() -> World:
    return build_world(3, SMALL)


def _of(world: World, label: Label) -> list[PlannedScan]:
    return [scan for scan in world.scans if scan.label is label]


def _shipped_to(world: World) -> dict[CodeRef, str]:
    """Each shipped code and its distributor; fails if a code is shipped twice."""
    children = {step.case: step.children() for step in world.setup if isinstance(step, Aggregation)}
    shipped: dict[CodeRef, str] = {}

    def ship(ref: CodeRef, distributor_id: str) -> None:
        assert ref not in shipped, f"{ref} shipped twice"
        shipped[ref] = distributor_id

    for step in world.setup:
        if isinstance(step, CodeShipment):
            for case in step.codes:
                for ref in (case, *children[case]):
                    ship(ref, step.distributor_id)
        elif isinstance(step, RangeShipment):
            for index in range(step.first, step.last + 1):
                ship(CodeRef(step.batch, index), step.distributor_id)
    return shipped


def _territories(world: World) -> dict[str, Territory]:
    return {d.distributor_id: d.territory for d in world.distributors}


def _point(scan: PlannedScan) -> tuple[Floats, Floats]:
    """The true point of a located scan, as one-element arrays (lon, lat)."""
    assert scan.location is not None
    return np.array([scan.location.true_lon]), np.array([scan.location.true_lat])


def _true_points(scans: list[PlannedScan]) -> tuple[Floats, Floats]:
    fixes = [scan.location for scan in scans if scan.location is not None]
    assert len(fixes) == len(scans)
    return np.array([f.true_lon for f in fixes]), np.array([f.true_lat for f in fixes])


# --- determinism and geometry -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_world_and_another_seed_another(small: World) -> None:
    assert build_world(3, SMALL) == small
    other = build_world(4, SMALL)
    assert other.scans != small.scans
    assert other.distributors[0].territory != small.distributors[0].territory


def test_ring_helpers_on_a_square() -> None:
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    lon, lat = np.array([0.5, 1.5, -0.1]), np.array([0.5, 0.5, 0.5])
    assert ring_contains(square, lon, lat).tolist() == [True, False, False]
    distance = ring_distance_km(square, lon, lat)
    assert distance[1] == pytest.approx(0.5 * 111.195 * math.cos(math.radians(0.5)), rel=1e-3)


def test_a_hole_is_outside_and_a_multipolygon_holds_both_parts() -> None:
    outer = ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0), (0.0, 0.0))
    hole = ((1.0, 1.0), (1.0, 3.0), (3.0, 3.0), (3.0, 1.0), (1.0, 1.0))
    island = ((10.0, 0.0), (11.0, 0.0), (11.0, 1.0), (10.0, 0.0))
    territory = Territory(((outer, hole), (island,)))
    lon, lat = np.array([0.5, 2.0, 10.8, 7.0]), np.array([0.5, 2.0, 0.5, 0.5])
    assert territory.contains(lon, lat).tolist() == [True, False, True, False]
    outside = territory.outside_km(lon, lat)
    assert outside[0] == 0.0
    assert outside[1] == pytest.approx(111.195, rel=0.01)
    assert territory.geojson()["type"] == "MultiPolygon"


def _signed_area(ring: tuple[tuple[float, float], ...]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) / 2


def test_territories_are_geojson_that_tiles_the_region(world: World) -> None:
    kinds = Counter(d.territory.geojson()["type"] for d in world.distributors)
    assert kinds["MultiPolygon"] >= 1
    assert any(len(polygon) > 1 for d in world.distributors for polygon in d.territory.polygons)
    for distributor in world.distributors:
        for outer, *holes in distributor.territory.polygons:
            for ring in (outer, *holes):
                assert ring[0] == ring[-1]
                assert len(ring) >= 4
            assert _signed_area(outer) > 0  # RFC 7946: exteriors counter-clockwise
            assert all(_signed_area(hole) < 0 for hole in holes)
    west, south, east, north = REGION
    lon, lat = np.meshgrid(np.linspace(west, east, 97)[1:-1], np.linspace(south, north, 83)[1:-1])
    inside = np.array([d.territory.contains(lon.ravel(), lat.ravel()) for d in world.distributors])
    covering = inside.sum(axis=0)
    assert covering.max() == 1  # no overlap
    assert (covering == 1).mean() > 0.999


# --- set-up -----------------------------------------------------------------------------------


def test_setup_comes_in_phases_within_the_api_limits(world: World) -> None:
    phases = [type(step).__name__ for step in world.setup]
    order = ["Distributor", "BatchPlan", "Aggregation", "Shipment"]
    ranks = [order.index("Shipment" if "Shipment" in p else p) for p in phases]
    assert ranks == sorted(ranks)
    batches = {b.name: b for b in world.batches}
    for batch in batches.values():
        assert digital_link.normalize_gtin(batch.gtin) is not None
        assert batch.quantity > 0
    aggregations = [s for s in world.setup if isinstance(s, Aggregation)]
    packed = [child for a in aggregations for child in a.children()]
    assert len(packed) == len(set(packed))
    assert all(batches[a.case.batch].kind == "case" for a in aggregations)
    assert all(child.index < batches[child.batch].quantity for child in packed)
    for step in world.setup:
        if isinstance(step, CodeShipment):
            assert len(step.codes) * (1 + world.params.units_per_case) <= MAX_CODES_PER_SHIPMENT
        if isinstance(step, RangeShipment):
            assert 0 <= step.first <= step.last < batches[step.batch].quantity
            assert step.last - step.first + 1 <= MAX_CODES_PER_SHIPMENT
    shipped = _shipped_to(world)
    assert {ref.batch for ref in shipped} == {"bottles", "cases", "cans"}


def test_every_scan_names_an_existing_code(world: World) -> None:
    quantity = {b.name: b.quantity for b in world.batches}
    for scan in world.scans:
        if isinstance(scan.code, CodeRef | Forged):
            assert 0 <= scan.code.index < quantity[scan.code.batch]
        else:
            assert scan.label is Label.GUESSING


def test_the_default_world_is_about_twenty_thousand_honest_scans(world: World) -> None:
    labels = Counter(scan.label for scan in world.scans)
    assert 18_000 <= labels[Label.HONEST] <= 21_000
    assert all(labels[label] > 0 for label in Label)
    assert sum(labels.values()) < 30_000


# --- scans ------------------------------------------------------------------------------------


def test_scans_are_in_time_order_and_interleaved(world: World) -> None:
    times = [scan.t_s for scan in world.scans]
    assert times == sorted(times)
    quarter = len(world.scans) // 4
    for start in range(0, 4 * quarter, quarter):
        labels = Counter(scan.label for scan in world.scans[start : start + quarter])
        assert labels[Label.HONEST] > quarter / 2
        assert sum(labels[label] > 0 for label in Label) >= 4
    positions = [i for i, scan in enumerate(world.scans) if scan.label is Label.HONEST]
    for label in Label:
        mine = [i for i, scan in enumerate(world.scans) if scan.label is label]
        assert any(mine[0] < i < mine[-1] for i in positions)


def test_honest_scans_are_inside_the_territory_their_code_went_to(world: World) -> None:
    """At or near home, at a friend's table nearby, or (travellers) in another territory."""
    shipped, territories = _shipped_to(world), _territories(world)
    consumers = {(c.device_id, c.member_id): c for c in world.consumers}
    friends_codes = {s.code for s in _of(world, Label.HONEST) if Trait.FRIENDS in s.traits}
    for scan in _of(world, Label.HONEST):
        assert isinstance(scan.code, CodeRef)
        consumer = consumers[scan.actor, scan.member_id]
        assert scan.ip == consumer.ip
        assert scan.traits >= consumer.traits
        if scan.code not in friends_codes:
            assert shipped[scan.code] == consumer.distributor_id
        if scan.location is None:
            continue
        lon, lat = _point(scan)
        home = float(haversine_km(np.array(consumer.lon), np.array(consumer.lat), lon, lat)[0])
        shipped_to = territories[shipped[scan.code]]
        if Trait.TRAVELLER in scan.traits:
            assert shipped_to.outside_km(lon, lat)[0] >= TRIP_MIN_KM - 20
        else:
            assert shipped_to.contains(lon, lat)[0]
            assert home < (FRIENDS_WITHIN_KM + 10 if Trait.FRIENDS in scan.traits else 10)
    for consumer in world.consumers:
        assert territories[consumer.distributor_id].contains(
            np.array([consumer.lon]), np.array([consumer.lat])
        )[0]


def test_honest_people_stay_under_the_rule_thresholds(world: World) -> None:
    codes: dict[str, set[object]] = defaultdict(set)
    members: dict[str, set[str | None]] = defaultdict(set)
    devices: dict[object, set[str | None]] = defaultdict(set)
    for scan in world.scans:
        devices[scan.code].add(scan.device_id)
        if scan.label in (Label.HONEST, Label.DIVERTED, Label.HARVESTED):
            codes[scan.actor].add(scan.code)
            members[scan.actor].add(scan.member_id)
    assert max(len(c) for c in codes.values()) <= MAX_CODES_PER_PHONE
    assert max(len(m) for m in members.values()) == 3  # a shared household phone
    for scan in world.scans:
        if scan.label is not Label.CLONED and isinstance(scan.code, CodeRef):
            assert len(devices[scan.code]) <= (5 if Trait.FRIENDS in scan.traits else 1), scan
    guessers = {scan.ip for scan in _of(world, Label.GUESSING)}
    assert not guessers & {scan.ip for scan in _of(world, Label.HONEST)}
    assert all(ipaddress.ip_address(scan.ip) in IP_NETWORK for scan in world.scans)


def test_some_honest_scans_repeat_and_a_few_have_no_location(world: World) -> None:
    honest = _of(world, Label.HONEST)
    ordinary = [s for s in honest if not s.traits & {Trait.REPEAT, Trait.FRIENDS}]
    repeats = len(ordinary) - len({scan.code for scan in ordinary})
    assert 0.08 < repeats / len(ordinary) < 0.25
    without = sum(scan.location is None for scan in honest) / len(honest)
    assert 0.01 < without < 0.06
    forms = Counter(scan.form for scan in honest)
    assert forms[CodeForm.URL] > forms[CodeForm.BARE] > forms[CodeForm.TYPED] > 0


def test_honest_traits_come_in_their_shares(world: World) -> None:
    params, consumers = world.params, world.consumers
    honest = _of(world, Label.HONEST)
    share = {
        trait: sum(trait in c.traits for c in consumers) / len(consumers)
        for trait in (Trait.BORDER, Trait.SHARED_PHONE, Trait.NAT, Trait.REPEAT)
    }
    assert share[Trait.BORDER] == pytest.approx(params.border_share, abs=0.015)
    assert share[Trait.SHARED_PHONE] == pytest.approx(params.shared_phone_share, abs=0.015)
    assert share[Trait.NAT] == pytest.approx(params.nat_share, abs=0.03)
    assert share[Trait.REPEAT] == pytest.approx(params.repeat_scanner_share, abs=0.015)
    travelling = sum(Trait.TRAVELLER in s.traits for s in honest) / len(honest)
    assert travelling == pytest.approx(params.traveller_share, rel=0.5)
    tables = {s.code for s in honest if Trait.FRIENDS in s.traits}
    assert len(tables) / len({s.code for s in honest}) == pytest.approx(
        params.friends_share, rel=0.5
    )


def test_border_dwellers_live_half_a_km_to_three_km_inside_the_border(world: World) -> None:
    territories = _territories(world)
    dwellers = [c for c in world.consumers if Trait.BORDER in c.traits]
    for consumer in dwellers:
        lon, lat = np.array([consumer.lon]), np.array([consumer.lat])
        territory = territories[consumer.distributor_id]
        assert territory.contains(lon, lat)[0]
        assert 0.5 <= territory.edge_km(lon, lat)[0] <= 3.0
    others = [c for c in world.consumers if Trait.BORDER not in c.traits]
    lon, lat = np.array([c.lon for c in others]), np.array([c.lat for c in others])
    edge = np.concatenate(
        [
            territories[d].edge_km(lon[mine], lat[mine])
            for d in territories
            if (mine := np.array([c.distributor_id == d for c in others])).any()
        ]
    )
    assert (edge < 3.0).mean() < 0.01  # without them, hardly anyone lives that close


def test_households_share_a_phone_and_routers_an_ip(world: World) -> None:
    by_device: dict[str, list[Consumer]] = defaultdict(list)
    by_ip: dict[str, list[Consumer]] = defaultdict(list)
    for consumer in world.consumers:
        by_device[consumer.device_id].append(consumer)
        by_ip[consumer.ip].append(consumer)
    for people in by_device.values():
        shared = Trait.SHARED_PHONE in people[0].traits
        assert len(people) in ((2, 3) if shared else (1,))
        assert len({(p.lon, p.lat, p.ip) for p in people}) == 1
        assert len({p.member_id for p in people}) == len(people)
    for people in by_ip.values():
        behind_router = Trait.NAT in people[0].traits
        if behind_router:
            assert 2 <= len(people) <= 8
            assert len({p.device_id for p in people}) == len(people)
        else:
            assert len({p.device_id for p in people}) == 1


def test_repeat_scanners_scan_each_code_three_to_eight_times(world: World) -> None:
    scans: dict[object, list[PlannedScan]] = defaultdict(list)
    for scan in _of(world, Label.HONEST):
        if Trait.REPEAT in scan.traits and Trait.FRIENDS not in scan.traits:
            scans[scan.code].append(scan)
    assert scans
    for repeated in scans.values():
        assert 3 <= len(repeated) <= 8
        assert len({s.device_id for s in repeated}) == 1


def test_friends_scan_one_bottle_at_one_table_within_minutes(world: World) -> None:
    tables: dict[object, list[PlannedScan]] = defaultdict(list)
    for scan in _of(world, Label.HONEST):
        if Trait.FRIENDS in scan.traits:
            tables[scan.code].append(scan)
    sizes = Counter(len(scans) for scans in tables.values())
    assert set(sizes) <= {2, 3, 4, 5}
    assert sizes[2] > sizes[5] > 0
    for scans in tables.values():
        assert len({s.device_id for s in scans}) == len(scans)
        assert scans[-1].t_s - scans[0].t_s <= 600
        points = {
            (s.location.true_lon, s.location.true_lat) for s in scans if s.location is not None
        }
        assert len(points) <= 1


def test_travellers_scan_in_another_territory(world: World) -> None:
    territories = _territories(world)
    consumers = {(c.device_id, c.member_id): c for c in world.consumers}
    trips = [s for s in _of(world, Label.HONEST) if Trait.TRAVELLER in s.traits]
    assert trips
    for scan in trips:
        if scan.location is None:
            continue
        home = consumers[scan.actor, scan.member_id].distributor_id
        lon, lat = _point(scan)
        inside = [d for d, territory in territories.items() if territory.contains(lon, lat)[0]]
        assert len(inside) == 1
        assert inside[0] != home


def test_gps_fixes_are_noisy_as_their_accuracy_says(world: World) -> None:
    fixes = [scan.location for scan in world.scans if scan.location is not None]
    accuracy = np.array([f.accuracy_m for f in fixes])
    seen_lon, seen_lat = np.array([f.lon for f in fixes]), np.array([f.lat for f in fixes])
    true_lon, true_lat = _true_points([s for s in world.scans if s.location is not None])
    offset_m = 1000 * haversine_km(seen_lon, seen_lat, true_lon, true_lat)
    assert (offset_m <= 5 * accuracy + 0.2).all()
    assert 0.55 < (offset_m <= accuracy).mean() < 0.8  # accuracy is the 68 % radius
    assert ((accuracy >= 4) & (accuracy <= 60)).mean() > 0.8
    assert 0.1 < ((accuracy >= 100) & (accuracy <= 1500)).mean() < 0.2


def test_diverted_units_are_scanned_far_outside_where_they_were_shipped(world: World) -> None:
    shipped, territories = _shipped_to(world), _territories(world)
    consumers = {c.device_id: c for c in world.consumers}
    for scan in _of(world, Label.DIVERTED):
        assert isinstance(scan.code, CodeRef)
        assert scan.code.batch == "bottles"
        shipped_to = shipped[scan.code]
        assert consumers[scan.actor].distributor_id != shipped_to
        assert territories[shipped_to].outside_km(*_point(scan))[0] >= DIVERTED_MIN_KM - 10


def test_clones_follow_the_owner_from_far_away_within_the_hour(world: World) -> None:
    shipped, territories = _shipped_to(world), _territories(world)
    by_code: dict[object, list[PlannedScan]] = defaultdict(list)
    for scan in _of(world, Label.CLONED):
        by_code[scan.code].append(scan)
    assert len(by_code) == world.params.clones
    for code, scans in by_code.items():
        assert isinstance(code, CodeRef)
        assert [s.clone_index for s in scans] == list(range(len(scans)))
        assert len(scans) >= 3  # the owner and at least two clone scans
        assert len({s.device_id for s in scans}) == len(scans)
        assert scans[-1].t_s - scans[0].t_s <= 3600
        lon, lat = _true_points(scans)
        assert territories[shipped[code]].contains(lon, lat).all()
        for i, j in itertools.combinations(range(len(scans)), 2):
            assert float(haversine_km(lon[i], lat[i], lon[j], lat[j])) >= CLONE_MIN_KM


def test_harvested_codes_come_from_batches_never_shipped(world: World) -> None:
    shipped_batches = {ref.batch for ref in _shipped_to(world)}
    harvested = _of(world, Label.HARVESTED)
    assert len(harvested) == world.params.harvested_scans
    assert len({scan.code for scan in harvested}) == len(harvested)
    for scan in harvested:
        assert isinstance(scan.code, CodeRef)
        assert scan.code.batch not in shipped_batches


def test_farms_scan_hundreds_of_codes_at_one_place(world: World) -> None:
    shipped, territories = _shipped_to(world), _territories(world)
    farms: dict[str, list[PlannedScan]] = defaultdict(list)
    for scan in _of(world, Label.FARM):
        farms[scan.actor].append(scan)
    assert len(farms) == world.params.farms
    members = sorted(len({s.member_id for s in scans}) for scans in farms.values())
    assert members[0] == 1  # the first farm keeps one member id: only its volume shows
    assert len(members) == 1 or members[-1] > 5
    for scans in farms.values():
        assert len(scans) >= 150
        assert len({s.code for s in scans}) == len(scans)
        lon, lat = _true_points(scans)
        assert float(haversine_km(lon, lat, lon[:1], lat[:1]).max()) < 1
        code = scans[0].code
        assert isinstance(code, CodeRef)
        assert territories[shipped[code]].contains(lon, lat).all()
    over = farm_over_threshold(world.scans)
    assert all(over[world.scans.index(scans[-1])] for scans in farms.values())


def test_address_farms_and_overscanned_codes_send_ids_that_give_nothing_away(
    world: World,
) -> None:
    farms: dict[str, list[PlannedScan]] = defaultdict(list)
    for scan in _of(world, Label.ADDRESS_FARM):
        farms[scan.actor].append(scan)
    assert len(farms) == world.params.address_farms
    for number, scans in enumerate(sorted(farms.values(), key=lambda s: s[0].actor)):
        assert len(scans) == world.params.address_farm_codes
        assert len({s.ip for s in scans}) == 1
        assert len({s.code for s in scans}) == len(scans)
        assert all(isinstance(s.code, CodeRef) for s in scans)
        devices = [s.device_id for s in scans]
        if number % 2 == 0:  # a fresh device and member id every time
            assert len(set(devices)) == len({s.member_id for s in scans}) == len(scans)
        else:
            assert devices == [None] * len(scans)
    over = address_over_threshold(world.scans)
    assert all(over[world.scans.index(scans[-1])] for scans in farms.values())
    overscanned = _of(world, Label.OVERSCANNED)
    assert len({s.code for s in overscanned}) == world.params.overscanned_codes
    assert len(overscanned) == world.params.overscanned_codes * world.params.overscan_scans
    assert len({s.ip for s in overscanned}) == len(overscanned)
    assert {(s.device_id, s.member_id, s.location) for s in overscanned} == {(None, None, None)}


def test_honest_addresses_stay_under_the_address_and_code_thresholds(world: World) -> None:
    """Households and routers share addresses: the default thresholds leave them room."""
    honest = _of(world, Label.HONEST)
    valid = Counter(s.ip for s in honest)
    devices: dict[str, set[str | None]] = defaultdict(set)
    for scan in honest:
        devices[scan.ip].add(scan.device_id)
    policy = FraudPolicy()
    assert max(valid.values()) <= policy.address_flag_valid_per_day
    assert max(len(d) for d in devices.values()) <= policy.address_flag_devices_per_day
    assert all(s.device_id is not None for s in honest)
    assert max(Counter(s.code for s in honest).values()) <= policy.code_max_scans


def test_guessers_send_only_invalid_codes(world: World) -> None:
    guesses = _of(world, Label.GUESSING)
    actors = Counter(scan.actor for scan in guesses)
    assert len(actors) == world.params.guessers
    assert min(actors.values()) >= 20
    rotating = [a for a in actors if len({s.device_id for s in guesses if s.actor == a}) > 1]
    assert 0 < len(rotating) < len(actors)
    kinds = Counter(type(scan.code).__name__ for scan in guesses)
    assert kinds["Forged"] > 0
    assert kinds["str"] > 0
    assert kinds["CodeRef"] == 0
    for scan in guesses:
        if isinstance(scan.code, str) and len(scan.code) == crockford.CODE_LENGTH:
            assert "U" in scan.code or crockford.decode(scan.code) is not None


def test_forging_changes_only_the_signature() -> None:
    code = crockford.encode((1 << signing.KEY_ID_SHIFT) | (42 << signing.TAG_BITS) | 12345)
    forged = crockford.decode(forge(code, 0xFFFF))
    assert forged is not None
    assert forged >> signing.TAG_BITS == (1 << 40) | 42
    assert forged & 0xFFFF != 12345 & 0xFFFF


def test_a_scan_renders_its_code_and_body() -> None:
    code = "0123456789ABCDEFGHJK"
    assert CodeForm.URL.render(code, "06901234000016").endswith("/01/06901234000016/21/" + code)
    assert CodeForm.TYPED.render(code, "") == "0123-4567-89ab-cdef-ghjk"
    assert crockford.decode(CodeForm.TYPED.render(code, "")) == crockford.decode(code)
    scan = build_world(3, SMALL).scans[0]
    body = scan.body("CODE", "w3-0", "run:")
    assert body["code"] == "CODE"
    assert body["scan_id"] == "run:w3-0"
    if scan.device_id is not None:
        assert body["device_id"] == "run:" + scan.device_id


def test_params_scale_and_refuse_nonsense() -> None:
    half = WorldParams().scaled(0.5)
    assert half.honest_scans == 10_000
    assert half.distributors == WorldParams().distributors
    assert WorldParams(clones=0).scaled(0.01).clones == 0
    with pytest.raises(ValueError, match="distributors"):
        WorldParams(distributors=2)


# --- the evaluation's scoring -----------------------------------------------------------------


def _perfect(world: World) -> list[Outcome]:
    """What ideal rules would answer."""
    over = zip(
        farm_over_threshold(world.scans),
        address_over_threshold(world.scans),
        overscan_over_threshold(world.scans),
        strict=True,
    )
    outcomes = []
    for scan, (farm_over, address_over, overscanned) in zip(world.scans, over, strict=True):
        flags = set() if scan.location is not None else {"no_location"}
        if scan.label is Label.CLONED and (scan.clone_index or 0) >= 1:
            flags.add("cloned")
        if scan.label is Label.DIVERTED or Trait.TRAVELLER in scan.traits:
            flags.add("out_of_territory")
        flags |= {"not_shipped"} if scan.label is Label.HARVESTED else set()
        flags |= {"device_farm"} if farm_over else set()
        flags |= {"address_farm"} if address_over else set()
        flags |= {"overscanned"} if overscanned else set()
        if scan.label is Label.GUESSING:
            flags |= {"bad_signature", "guessing"}
        outcomes.append(Outcome(200, "suspicious" if flags else "genuine", frozenset(flags)))
    return outcomes


def test_perfect_answers_meet_every_goal(small: World) -> None:
    report = evaluate(small, _perfect(small), 1.0, 2.0)
    assert all(rate.value == 1.0 for rate in report.recall.values())
    precision = dict(report.precision)
    diverted = precision.pop(Label.DIVERTED.value)  # travellers are rightly out of territory
    assert all(rate.value == 1.0 for rate in precision.values())
    travellers = sum(Trait.TRAVELLER in scan.traits for scan in small.scans)
    assert diverted.total - diverted.hits == travellers > 0
    assert report.honest_false_positives.hits == 0
    figures = report.to_json()
    assert figures["goals_met"] is True
    assert figures["scans"]["total"] == len(small.scans)  # type: ignore[index]


def test_false_positives_and_misses_are_counted(small: World) -> None:
    outcomes = _perfect(small)
    honest = [
        i
        for i, scan in enumerate(small.scans)
        if scan.label is Label.HONEST and Trait.TRAVELLER not in scan.traits
    ]
    outcomes[honest[0]] = Outcome(200, "suspicious", frozenset({"cloned", "no_location"}))
    outcomes[honest[1]] = Outcome(429, None, frozenset())
    outcomes[honest[2]] = Outcome(200, "genuine", frozenset({"no_location"}))
    second_clone = next(i for i, s in enumerate(small.scans) if s.clone_index == 2)
    outcomes[second_clone] = Outcome(200, "genuine", frozenset())
    report = evaluate(small, outcomes)
    assert report.honest_false_positives == fraud_eval.Rate(2, len(honest))
    assert [example["scan"] for example in report.false_positive_examples] == honest[:2]
    assert report.statuses_by_label[Label.HONEST.value]["429"] == 1
    cloned = report.recall["cloned"]
    assert cloned.hits == cloned.total - 1
    precision = report.precision[Label.CLONED.value]
    assert precision.total - precision.hits == 1
    assert report.goals()["cloned_recall"]["met"] is (cloned.hits / cloned.total >= 0.99)


def test_travellers_are_counted_apart_from_the_honest_false_positives(small: World) -> None:
    outcomes = _perfect(small)
    trips = [i for i, scan in enumerate(small.scans) if Trait.TRAVELLER in scan.traits]
    assert trips
    outcomes[trips[0]] = Outcome(200, "genuine", frozenset())
    report = evaluate(small, outcomes)
    assert report.honest_false_positives.hits == 0
    assert report.travellers == fraud_eval.Rate(len(trips) - 1, len(trips))
    figures = report.to_json()
    assert figures["travellers"]["scans"] == len(trips)  # type: ignore[index]
    assert "excludes travellers" in figures["honest"]["note"]  # type: ignore[index]


def test_false_positives_are_broken_down_by_trait_with_examples(small: World) -> None:
    outcomes = _perfect(small)
    table = next(i for i, s in enumerate(small.scans) if Trait.FRIENDS in s.traits)
    detail = {"flag": "cloned", "reason": "devices", "distinct_devices": 5, "limit": 4}
    outcomes[table] = Outcome(200, "counterfeit", frozenset({"cloned"}), (detail,))
    report = evaluate(small, outcomes)
    assert report.honest_by_trait[Trait.FRIENDS.value].hits == 1
    assert report.false_positive_examples == [
        {
            "scan": table,
            "traits": sorted(small.scans[table].traits),
            "status": 200,
            "flags": [detail],
        }
    ]


def test_a_scan_waits_for_the_last_scan_of_its_code_and_of_its_actor(small: World) -> None:
    waits = predecessors(small.scans)
    for index, scan in enumerate(small.scans):
        for earlier in waits[index]:
            assert earlier < index
            other = small.scans[earlier]
            assert other.actor == scan.actor or other.code == scan.code
        if scan.clone_index:
            owner = next(
                i for i, s in enumerate(small.scans) if s.code == scan.code and s.clone_index == 0
            )
            assert _reaches(waits, index, owner)


def _reaches(waits: list[tuple[int, ...]], start: int, target: int) -> bool:
    todo, seen = [start], set()
    while todo:
        index = todo.pop()
        if index == target:
            return True
        seen.add(index)
        todo.extend(i for i in waits[index] if i not in seen)
    return False


def test_the_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        fraud_eval.main(["--help"])
    assert exit_info.value.code == 0
    assert "X-Forwarded-For" in capsys.readouterr().out


def test_the_command_refuses_a_remote_url() -> None:
    with pytest.raises(SystemExit) as exit_info:
        fraud_eval.main(["--url", "http://example.com:8080", "--admin-token", "t"])
    assert exit_info.value.code == 2


# --- driving a fake of the API ----------------------------------------------------------------

TOKEN = "fake-admin-token-0123456789"


class FakeApi:
    """Just enough of the API: codes are issued, aggregated, shipped; a scan is flagged
    ``not_shipped``, ``bad_signature``, ``malformed``, ``gtin_mismatch`` or ``no_location``."""

    def __init__(self) -> None:
        self.next_serial = 1000
        self.gtin_of: dict[int, str] = {}  # serial -> GTIN
        self.serial_of: dict[int, int] = {}  # code value -> serial
        self.children: dict[int, list[int]] = {}
        self.shipped: set[int] = set()
        self.distributors: dict[str, Any] = {}
        self.scans: list[tuple[str, dict[str, Any]]] = []  # (X-Forwarded-For, body)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.router.add_put("/v1/distributors/{id}", self.put_distributor)
        app.router.add_post("/v1/batches", self.order)
        app.router.add_get("/v1/batches/{id}/codes", self.codes)
        app.router.add_post("/v1/aggregations", self.aggregate)
        app.router.add_post("/v1/shipments", self.ship)
        app.router.add_post("/v1/scans", self.scan)
        return app

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/scans":
            assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def value(serial: int) -> int:
        tag = (serial * 0x9E3779B97F4A7C15) & ((1 << signing.TAG_BITS) - 1)
        return (1 << signing.KEY_ID_SHIFT) | (serial << signing.TAG_BITS) | tag

    async def put_distributor(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert body["territory"]["type"] in ("Polygon", "MultiPolygon")
        self.distributors[request.match_info["id"]] = body
        return web.json_response(body, status=201)

    async def order(self, request: web.Request) -> web.Response:
        body = await request.json()
        first = self.next_serial
        self.next_serial += body["quantity"]
        gtin = digital_link.normalize_gtin(body["gtin"])
        assert gtin is not None
        for serial in range(first, self.next_serial):
            self.gtin_of[serial] = gtin
            self.serial_of[self.value(serial)] = serial
        batch = {"batch_id": f"b{first}", "first_serial": first, "gtin": gtin}
        return web.json_response({**batch, "last_serial": self.next_serial - 1}, status=201)

    async def codes(self, request: web.Request) -> web.Response:
        first = int(request.match_info["id"][1:]) + int(request.query["offset"])
        serials = range(first, first + int(request.query["limit"]))
        return web.Response(text="".join(crockford.encode(self.value(s)) + "\n" for s in serials))

    async def aggregate(self, request: web.Request) -> web.Response:
        body = await request.json()
        children = [self.serial_of[crockford.decode(c) or 0] for c in body["children"]]
        self.children[self.serial_of[crockford.decode(body["parent"]) or 0]] = children
        return web.json_response({}, status=201)

    async def ship(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert body["distributor_id"] in self.distributors
        if "codes" in body:
            cases = [self.serial_of[crockford.decode(c) or 0] for c in body["codes"]]
            serials = [s for case in cases for s in (case, *self.children.get(case, ()))]
        else:
            serials = list(range(body["serial_from"], body["serial_to"] + 1))
        assert len(serials) <= MAX_CODES_PER_SHIPMENT
        assert not self.shipped & set(serials)
        self.shipped.update(serials)
        return web.json_response({"codes_shipped": len(serials)}, status=201)

    async def scan(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.scans.append((request.headers["X-Forwarded-For"], body))
        flags = [] if "lat" in body else [{"flag": "no_location"}]
        text: str = body["code"]
        gtin = text.split("/")[-3] if "/" in text else None
        value = crockford.decode(text.split("/")[-1])
        serial = self.serial_of.get(value or 0)
        if value is None:
            flags.append({"flag": "malformed"})
        elif serial is None:
            flags.append({"flag": "bad_signature"})
        elif gtin is not None and gtin != self.gtin_of[serial]:
            flags.append({"flag": "gtin_mismatch"})
        elif serial not in self.shipped:
            flags.append({"flag": "not_shipped"})
        return web.json_response({"verdict": "genuine", "flags": flags})


async def test_run_world_sets_up_resolves_and_sends_every_scan(
    aiohttp_server: Any, small: World
) -> None:
    fake = FakeApi()
    server = await aiohttp_server(fake.app())
    progress: list[tuple[str, int, int]] = []
    async with aiohttp.ClientSession() as session:
        report = await run_world(
            session,
            str(server.make_url("/")),
            small,
            TOKEN,
            concurrency=8,
            id_prefix="r1:",
            progress=lambda *report: progress.append(report),
        )
    assert len(fake.distributors) == len(small.distributors)
    assert len(fake.scans) == len(small.scans)
    assert report.recall["harvested"].value == 1.0
    assert report.precision[Label.HARVESTED.value].value == 1.0
    assert report.honest_false_positives.hits == 0
    assert set(report.flags_by_label[Label.HONEST.value]) <= {"no_location"}
    guess_flags = set(report.flags_by_label[Label.GUESSING.value])
    assert guess_flags <= {"malformed", "bad_signature", "no_location"}
    arrival = {body["scan_id"]: n for n, (_, body) in enumerate(fake.scans)}
    waits = predecessors(small.scans)
    for index, scan in enumerate(small.scans):
        number = arrival[f"r1:w{small.seed}-{index}"]
        ip, body = fake.scans[number]
        assert ip == scan.ip
        assert body.get("device_id") == (scan.device_id and "r1:" + scan.device_id)
        for earlier in waits[index]:
            assert arrival[f"r1:w{small.seed}-{earlier}"] < number
    assert ("scans", len(small.scans), len(small.scans)) in progress
