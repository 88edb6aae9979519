"""The fraud rules and the verdict table, without servers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraud.assessment import ScanFacts, assess
from fraud.clones import clone_flag
from fraud.distributors import Distributor
from fraud.errors import ShipmentConflict
from fraud.location import NO_SERIAL, Placement, place
from fraud.policy import FraudPolicy
from fraud.reference import ReferenceData
from fraud.scan_record import NO_DEVICE, ScanRecord, record_scan
from fraud.shipments import AGGREGATE, NOT_SHIPPED, SHIP, LoggedShipment, ShipmentIndex
from fraud.velocity import NO_MEMBER, NOT_OBSERVED, ActorCounts, velocity_flags
from fraud.verdicts import DEFAULT_RULINGS, Ruling, Verdict, judge

POLICY = FraudPolicy()
OWNER, OTHER, THIRD = b"\x01" * 4, b"\x02" * 4, b"\x03" * 4
SHANGHAI = (31.23, 121.47)
BEIJING = (39.90, 116.40)  # 1,067 km from Shanghai
MINUTE_MS = 60_000


def _history(*devices: bytes, at: tuple[float, float] = SHANGHAI, ms: int = 0) -> ScanRecord:
    history = record_scan(None, ms, *at, devices[0] if devices else NO_DEVICE, NO_MEMBER)
    for device in devices[1:]:
        history = record_scan(history, ms, *at, device, NO_MEMBER)
    return history


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], Ruling(Verdict.GENUINE, 0)),
        (["no_location"], Ruling(Verdict.GENUINE, 1)),
        (["out_of_territory", "no_location"], Ruling(Verdict.GENUINE, 2)),
        (["out_of_territory", "not_shipped"], Ruling(Verdict.SUSPICIOUS, 3)),
        (["revoked", "device_farm"], Ruling(Verdict.REVOKED, 3)),
        (["revoked", "cloned"], Ruling(Verdict.COUNTERFEIT, 4)),
        (["bad_signature", "guessing"], Ruling(Verdict.COUNTERFEIT, 4)),
    ],
)
def test_the_verdict_is_the_most_severe_and_the_risk_the_highest(
    flags: list[str], expected: Ruling
) -> None:
    assert judge(flags, DEFAULT_RULINGS) == expected


def test_every_flag_a_rule_can_raise_is_in_the_table() -> None:
    raised = {"malformed", "bad_signature", "unknown_key", "unknown_serial", "gtin_mismatch"}
    raised |= {"revoked", "not_shipped", "out_of_territory", "cloned", "device_farm"}
    raised |= {"guessing", "no_location", "address_farm", "overscanned"}
    assert set(DEFAULT_RULINGS) == raised


def test_the_policy_overrides_thresholds_and_the_table_from_json() -> None:
    policy = FraudPolicy.from_json(
        '{"clone_speed_kmh": 1200, "verdicts": {"out_of_territory": ["suspicious", 3]}}'
    )
    assert policy.clone_speed_kmh == 1200.0
    assert judge(["out_of_territory"], policy.verdicts) == Ruling(Verdict.SUSPICIOUS, 3)
    assert judge(["cloned"], policy.verdicts) == Ruling(Verdict.COUNTERFEIT, 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "must be a JSON object"),
        ("{", "not valid JSON"),
        ('{"clone_sped_kmh": 1}', "unknown key 'clone_sped_kmh'"),
        ('{"clone_speed_kmh": "fast"}', "must be a non-negative number"),
        ('{"farm_codes_per_hour": 1.5}', "must be an integer"),
        ('{"verdicts": {"teleport": ["genuine", 0]}}', "unknown flag 'teleport'"),
        ('{"verdicts": {"cloned": ["bad", 4]}}', "verdict must be one of"),
        ('{"verdicts": {"cloned": ["counterfeit", 9]}}', "risk must be an integer 0 to 4"),
    ],
)
def test_a_bad_policy_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FraudPolicy.from_json(text)


def test_the_first_scan_and_the_first_scanner_are_never_clones() -> None:
    assert clone_flag(None, 0, *BEIJING, 10.0, OTHER, POLICY) is None
    history = _history(OWNER)
    assert clone_flag(history, MINUTE_MS, *BEIJING, 10.0, OWNER, POLICY) is None


def test_another_device_too_far_too_soon_is_a_clone_with_the_numbers() -> None:
    flag = clone_flag(_history(OWNER), 30 * MINUTE_MS, *BEIJING, 10.0, OTHER, POLICY)
    assert flag is not None
    assert flag["reason"] == "travel"
    assert flag["distance_km"] == pytest.approx(1067, abs=5)
    assert flag["minutes"] == 30.0
    assert flag["speed_kmh"] == pytest.approx((1067 - 1.01) * 2, abs=10)


def test_another_device_far_away_after_a_plausible_trip_is_not_a_clone() -> None:
    two_hours = 120 * MINUTE_MS  # ~530 km/h: a flight
    assert clone_flag(_history(OWNER), two_hours, *BEIJING, 10.0, OTHER, POLICY) is None


def test_a_second_phone_at_the_same_table_is_not_a_clone() -> None:
    nearby = (SHANGHAI[0] + 0.001, SHANGHAI[1])  # 110 m, seconds later
    assert clone_flag(_history(OWNER), 5_000, *nearby, 50.0, OTHER, POLICY) is None


def test_a_scan_without_location_cannot_be_judged_on_travel() -> None:
    assert clone_flag(_history(OWNER), 1_000, math.nan, math.nan, math.nan, OTHER, POLICY) is None


def test_more_devices_than_the_limit_elsewhere_is_a_clone() -> None:
    devices = [bytes([n]) * 4 for n in range(1, POLICY.clone_max_devices + 1)]
    history = _history(*devices)
    elsewhere = (SHANGHAI[0] + 0.1, SHANGHAI[1])  # 11 km away, two days later: no travel flag
    flag = clone_flag(history, 2 * 86_400_000, *elsewhere, 10.0, b"\x09" * 4, POLICY)
    assert flag == {
        "flag": "cloned",
        "reason": "devices",
        "distinct_devices": POLICY.clone_max_devices + 1,
        "limit": POLICY.clone_max_devices,
    }
    assert clone_flag(history, 0, *elsewhere, 10.0, devices[1], POLICY) is None  # known device


def test_friends_gathered_round_one_bottle_are_not_clones() -> None:
    devices = [bytes([n]) * 4 for n in range(1, POLICY.clone_max_devices + 1)]
    at_the_table = (SHANGHAI[0] + 0.002, SHANGHAI[1])  # 220 m: GPS indoors
    fifth = clone_flag(_history(*devices), MINUTE_MS, *at_the_table, 30.0, b"\x09" * 4, POLICY)
    assert fifth is None
    no_location = clone_flag(
        _history(*devices), MINUTE_MS, math.nan, math.nan, math.nan, b"\x09" * 4, POLICY
    )
    assert no_location is not None  # where it cannot be told, the limit holds


def test_a_new_device_is_compared_with_the_last_scan_too() -> None:
    # first in Shanghai two days ago, last in Beijing a minute ago by OTHER: THIRD in Shanghai
    history = record_scan(_history(OWNER), 2 * 86_400_000, *BEIJING, OTHER, NO_MEMBER)
    now = 2 * 86_400_000 + MINUTE_MS
    flag = clone_flag(history, now, *SHANGHAI, 10.0, THIRD, POLICY)
    assert flag is not None
    assert flag["minutes"] == 1.0


def test_scans_of_a_code_in_one_batch_are_judged_as_if_they_came_one_by_one() -> None:
    phones = [bytes([n]) * 4 for n in range(1, 8)]
    scans = [  # 2.8 km apart a minute apart: devices past the limit, no impossible journey
        ScanFacts(
            7,
            (),
            SHANGHAI[0] + 0.025 * n,
            SHANGHAI[1],
            10.0,
            n * MINUTE_MS,
            "",
            phone,
            NO_MEMBER,
            "",
        )
        for n, phone in enumerate([*phones, phones[4]])  # the fifth phone comes back
    ]
    nowhere = Placement((), "", "", math.nan)
    unseen = [NOT_OBSERVED] * len(scans)
    batch = assess(scans, [nowhere] * len(scans), [None] * len(scans), unseen, unseen, POLICY)
    one_by_one, record = [], None
    for scan in scans:  # each reading the record Redis would hold
        one_by_one += assess([scan], [nowhere], [record], unseen[:1], unseen[:1], POLICY)
        record = record_scan(record, scan.now_ms, scan.lat, scan.lon, scan.device, scan.member)
    assert [a.flags for a in batch] == [a.flags for a in one_by_one]
    counted = [f["distinct_devices"] for a in batch for f in a.flags if f["flag"] == "cloned"]
    assert counted == [5, 6, 6, 6]  # four devices remembered, then "more"; the fifth unknown


def test_farms_are_flagged_past_the_hourly_codes_or_daily_members() -> None:
    many_codes = ActorCounts(0, POLICY.farm_codes_per_hour + 1, 1, 0)
    many_members = ActorCounts(0, 3, POLICY.farm_members_per_day + 1, 0)
    assert velocity_flags(many_codes, NOT_OBSERVED, POLICY) == [
        {"flag": "device_farm", "reason": "codes_per_hour", "count": 61, "limit": 60}
    ]
    assert velocity_flags(many_members, NOT_OBSERVED, POLICY)[0]["reason"] == "members_per_day"
    at_limit = ActorCounts(0, POLICY.farm_codes_per_hour, POLICY.farm_members_per_day, 0)
    assert velocity_flags(at_limit, NOT_OBSERVED, POLICY) == []


def test_guessing_is_flagged_by_device_or_by_address() -> None:
    device = ActorCounts(0, 0, 0, POLICY.guess_flag_device + 1)
    ip = ActorCounts(0, 0, 0, POLICY.guess_flag_ip + 1)
    [by_device] = velocity_flags(device, NOT_OBSERVED, POLICY)
    [by_ip] = velocity_flags(NOT_OBSERVED, ip, POLICY)
    assert (by_device["actor"], by_device["invalid_codes"]) == ("device", 11)
    assert (by_ip["actor"], by_ip["invalid_codes"]) == ("ip", 101)
    assert len(velocity_flags(device, ip, POLICY)) == 1


def test_the_shipment_index_finds_each_serials_distributor() -> None:
    log = [
        LoggedShipment.parse("S1\nD1\n5\n10-19,40-40"),
        LoggedShipment.parse("S2\nD2\n6\n20-29"),
    ]
    index = ShipmentIndex.empty().extended(log[:1], 1).extended(log[1:], 2)
    serials = np.array([9, 10, 19, 20, 29, 30, 40, 41], dtype=np.int64)
    names = [
        None if n == NOT_SHIPPED else index.distributors[n]
        for n in index.distributor_numbers(serials)
    ]
    assert names == [None, "D1", "D1", "D2", "D2", None, "D1", None]
    assert index.log_length == 2
    assert ShipmentIndex.empty().distributor_of(5) is None


def test_script_refusals_name_the_serial_and_the_other_party() -> None:
    conflict = SHIP.error("SHIP_OVERLAP 1234 D 17")
    assert isinstance(conflict, ShipmentConflict)
    assert (conflict.reason, conflict.serial, conflict.other) == ("SHIP_OVERLAP", 1234, "D 17")
    full = AGGREGATE.error("AGG_PARENT_FULL")
    assert isinstance(full, ShipmentConflict)
    assert (full.serial, full.other) == (None, None)


def _reference() -> ReferenceData:
    """EAST (a square around Shanghai) holds serials 100-199; NORTH (Beijing) holds none."""
    square = [[120.9, 30.7], [121.9, 30.7], [121.9, 31.7], [120.9, 31.7], [120.9, 30.7]]
    north = [[116.0, 39.6], [116.8, 39.6], [116.8, 40.2], [116.0, 40.2], [116.0, 39.6]]
    distributors = {
        name: Distributor.create(name, name, {"type": "Polygon", "coordinates": [ring]}, 0)
        for name, ring in (("EAST", square), ("NORTH", north))
    }
    shipped = [LoggedShipment("S1", "EAST", 0, ((100, 199),))]
    return ReferenceData.empty().with_distributors(distributors, 1).with_shipments(shipped, 1)


def test_placement_flags_where_a_scan_happened_against_where_its_code_went() -> None:
    nan = math.nan
    placements = place(
        serials=[150, 150, 150, 500, NO_SERIAL, 150, 150],
        lats=[31.2, 39.9, 31.2, 31.2, 31.2, nan, 0.0],
        lons=[121.4, 116.4, 121.93, 121.4, 121.4, nan, 0.0],
        accuracies_m=[10.0, 10.0, 10.0, 10.0, 10.0, nan, 10.0],
        reference=_reference(),
        policy=POLICY,
    )
    inside, in_beijing, just_outside, unshipped, counterfeit, missing, null_island = placements
    assert inside == Placement((), "EAST", "EAST", 0.0)
    [diverted] = in_beijing.flags
    assert (diverted["flag"], diverted["distributor"], diverted["surfaced_in"]) == (
        "out_of_territory",
        "EAST",
        "NORTH",
    )
    assert in_beijing.distance_km == pytest.approx(diverted["distance_km"], abs=0.05)
    assert 2.0 < just_outside.distance_km < 3.5
    assert just_outside.surfaced_in == ""  # outside every territory
    assert unshipped.flags == ({"flag": "not_shipped"},)
    assert (counterfeit.flags, counterfeit.distributor_id) == ((), "")
    assert math.isnan(counterfeit.distance_km)
    assert [f["reason"] for f in missing.flags + null_island.flags] == ["missing", "implausible"]
