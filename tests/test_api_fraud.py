"""Distributors, aggregation, shipments and every scan flag, through HTTP against real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fraud.policy import FraudPolicy
from ingest.config import Settings
from ingest.http.app import create_app
from ingest.scan.fraud_stage import REFERENCE_MAX_AGE_S
from tests.helpers import ADMIN, AiohttpClient, batch_codes, order_batch, post_scan

pytestmark = pytest.mark.redis

# A square around Shanghai (about 110 x 95 km) with a hole around Pudong airport, and one
# around Beijing: the territories of two distributors.
SHANGHAI_SQUARE = [[120.9, 30.7], [121.9, 30.7], [121.9, 31.7], [120.9, 31.7], [120.9, 30.7]]
AIRPORT_HOLE = [[121.75, 31.1], [121.85, 31.1], [121.85, 31.2], [121.75, 31.2], [121.75, 31.1]]
EAST = {"type": "Polygon", "coordinates": [SHANGHAI_SQUARE, AIRPORT_HOLE]}
NORTH = {
    "type": "Polygon",
    "coordinates": [[[116.0, 39.6], [116.8, 39.6], [116.8, 40.2], [116.0, 40.2], [116.0, 39.6]]],
}
IN_SHANGHAI = {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 20}
IN_BEIJING = {"lat": 39.9042, "lon": 116.4074, "accuracy_m": 20}
AT_AIRPORT = {"lat": 31.15, "lon": 121.80, "accuracy_m": 20}

Client = TestClient[Any, Any]


async def _put_distributor(client: Client, distributor_id: str, territory: object) -> Any:
    body = {"name": f"Distributor {distributor_id}", "territory": territory}
    return await client.put(f"/v1/distributors/{distributor_id}", json=body, headers=ADMIN)


async def put_east_and_north(client: Client) -> None:
    """The distributors EAST (Shanghai, with a hole at the airport) and NORTH (Beijing)."""
    for distributor_id, territory in (("EAST", EAST), ("NORTH", NORTH)):
        assert (await _put_distributor(client, distributor_id, territory)).status == 201


async def _ship(client: Client, body: dict[str, object], status: int = 201) -> dict[str, Any]:
    reply = await client.post("/v1/shipments", json=body, headers=ADMIN)
    assert reply.status == status, await reply.text()
    answer: dict[str, Any] = await reply.json()
    return answer


def _flags(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {flag["flag"]: flag for flag in answer["flags"]}


@pytest.fixture
async def world(client: Client) -> dict[str, Any]:
    """Two distributors; units and cases, the first case holding units 0-5, shipped east."""
    await put_east_and_north(client)
    units = await order_batch(client, quantity=100)
    cases = await order_batch(client, quantity=5, kind="case")
    unit_codes = await batch_codes(client, units["batch_id"], limit=100)
    case_codes = await batch_codes(client, cases["batch_id"], limit=5)
    reply = await client.post(
        "/v1/aggregations",
        json={"parent": case_codes[0], "children": unit_codes[:6]},
        headers=ADMIN,
    )
    assert reply.status == 201, await reply.text()
    await _ship(client, {"distributor_id": "EAST", "codes": [case_codes[0]]})
    return {"units": units, "cases": cases, "unit_codes": unit_codes, "case_codes": case_codes}


async def test_a_distributor_is_stored_validated_and_listed(client: Client) -> None:
    created = await _put_distributor(client, "D17", EAST)
    assert created.status == 201
    assert (await _put_distributor(client, "D17", NORTH)).status == 200
    shown = await (await client.get("/v1/distributors/D17", headers=ADMIN)).json()
    assert shown["territory"]["coordinates"][0][0] == [116.0, 39.6]
    listed = await (await client.get("/v1/distributors", headers=ADMIN)).json()
    assert [d["distributor_id"] for d in listed["distributors"]] == ["D17"]


@pytest.mark.parametrize(
    ("territory", "message"),
    [
        ({"type": "Point", "coordinates": [1, 2]}, "Polygon"),
        ({"type": "Polygon", "coordinates": [SHANGHAI_SQUARE[:-1]]}, "closed"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "4"),
        ({"type": "Polygon", "coordinates": [[[0, 95], [1, 1], [2, 0], [0, 95]]]}, "latitude"),
        ({"type": "Polygon", "coordinates": "nope"}, "coordinates"),
        ("square", "object"),
    ],
)
async def test_bad_territories_are_refused_and_change_nothing(
    client: Client, territory: object, message: str
) -> None:
    reply = await _put_distributor(client, "D1", territory)
    assert reply.status == 422
    error = (await reply.json())["error"]
    assert error["code"] == "invalid_territory"
    assert message in error["message"]
    assert (await client.get("/v1/distributors/D1", headers=ADMIN)).status == 404


async def test_bad_distributor_ids_and_names_are_refused(client: Client) -> None:
    assert (await _put_distributor(client, "-bad", EAST)).status == 422
    reply = await client.put(
        "/v1/distributors/D1", json={"name": "", "territory": EAST}, headers=ADMIN
    )
    assert reply.status == 422
    reply = await client.put("/v1/distributors/D1", json={"name": "x"}, headers=ADMIN)
    assert (await reply.json())["error"]["message"] == "territory is required"


async def test_distributors_need_an_admin(client: Client) -> None:
    reply = await client.put("/v1/distributors/D1", json={"name": "x", "territory": EAST})
    assert reply.status == 401


async def test_a_shipped_unit_in_its_territory_is_genuine(
    client: Client, world: dict[str, Any]
) -> None:
    answer = await post_scan(client, {"code": world["unit_codes"][0], **IN_SHANGHAI})
    assert (answer["verdict"], answer["risk"], answer["flags"]) == ("genuine", 0, [])


async def test_a_code_never_shipped_is_flagged(client: Client, world: dict[str, Any]) -> None:
    answer = await post_scan(client, {"code": world["unit_codes"][50], **IN_SHANGHAI})
    assert (answer["verdict"], answer["risk"]) == ("suspicious", 3)
    assert _flags(answer) == {"not_shipped": {"flag": "not_shipped"}}


async def test_goods_surfacing_in_another_territory_are_flagged_with_the_distance(
    client: Client, world: dict[str, Any]
) -> None:
    answer = await post_scan(client, {"code": world["unit_codes"][1], **IN_BEIJING})
    assert (answer["verdict"], answer["risk"]) == ("genuine", 2)
    flag = _flags(answer)["out_of_territory"]
    assert flag["distributor"] == "EAST"
    assert flag["surfaced_in"] == "NORTH"
    assert 950 < flag["distance_km"] < 1100
    assert flag["tolerance_km"] == 2.1


async def test_a_scan_in_a_territorys_hole_is_outside_it(
    client: Client, world: dict[str, Any]
) -> None:
    answer = await post_scan(client, {"code": world["unit_codes"][2], **AT_AIRPORT})
    flag = _flags(answer)["out_of_territory"]
    assert 2.1 < flag["distance_km"] < 6
    assert flag["surfaced_in"] is None


async def test_gps_accuracy_widens_the_tolerance(client: Client, world: dict[str, Any]) -> None:
    just_outside = {"lat": 31.2, "lon": 121.93}  # ~2.9 km east of the border
    precise = await post_scan(
        client, {"code": world["unit_codes"][3], **just_outside, "accuracy_m": 10}
    )
    vague = await post_scan(
        client, {"code": world["unit_codes"][4], **just_outside, "accuracy_m": 500}
    )
    assert "out_of_territory" in _flags(precise)
    assert vague["flags"] == []


async def test_missing_or_implausible_locations_skip_the_territory_rules(
    client: Client, world: dict[str, Any]
) -> None:
    missing = await post_scan(client, {"code": world["unit_codes"][0]})
    null_island = await post_scan(client, {"code": world["unit_codes"][1], "lat": 0, "lon": 0})
    vague = await post_scan(
        client, {"code": world["unit_codes"][2], **IN_BEIJING, "accuracy_m": 50_000}
    )
    reasons = [_flags(a)["no_location"]["reason"] for a in (missing, null_island, vague)]
    assert reasons == ["missing", "implausible", "inaccurate"]
    assert all(set(_flags(a)) == {"no_location"} for a in (missing, null_island, vague))
    assert (missing["verdict"], missing["risk"]) == ("genuine", 1)


async def test_a_clone_on_another_phone_far_away_is_counterfeit_and_the_owner_stays_genuine(
    client: Client, world: dict[str, Any]
) -> None:
    code = world["unit_codes"][5]
    owner = await post_scan(client, {"code": code, **IN_SHANGHAI, "device_id": "owner"})
    clone = await post_scan(client, {"code": code, **IN_BEIJING, "device_id": "cloner"})
    again = await post_scan(client, {"code": code, **IN_SHANGHAI, "device_id": "owner"})
    assert owner["verdict"] == again["verdict"] == "genuine"
    assert (clone["verdict"], clone["risk"]) == ("counterfeit", 4)
    flag = _flags(clone)["cloned"]
    assert flag["reason"] == "travel"
    assert flag["speed_kmh"] > 900


async def test_two_scans_of_one_code_in_one_micro_batch_are_judged_in_order(
    client: Client, world: dict[str, Any]
) -> None:
    code = world["unit_codes"][5]
    bulk = (
        f'{{"code": "{code}", "lat": 31.23, "lon": 121.47, "device_id": "owner"}}\n'
        f'{{"code": "{code}", "lat": 39.90, "lon": 116.40, "device_id": "cloner"}}\n'
    )
    reply = await client.post(
        "/v1/scans/bulk", data=bulk, headers={"Content-Type": "application/x-ndjson"}
    )
    lines = (await reply.text()).splitlines()
    assert ['"genuine"' in lines[0], '"cloned"' in lines[1]] == [True, True]


async def test_too_many_phones_on_one_code_is_a_clone(
    client: Client, world: dict[str, Any]
) -> None:
    code = world["unit_codes"][4]
    answers = []
    for n in range(6):  # 2.8 km apart: not one gathering, and no impossible journey
        place = {**IN_SHANGHAI, "lat": IN_SHANGHAI["lat"] + 0.025 * n}
        answers.append(await post_scan(client, {"code": code, **place, "device_id": f"p{n}"}))
    assert [a["verdict"] for a in answers] == ["genuine"] * 4 + ["counterfeit"] * 2
    assert [_flags(a)["cloned"]["reason"] for a in answers[4:]] == ["devices", "devices"]


async def test_friends_at_one_table_are_not_clones(client: Client, world: dict[str, Any]) -> None:
    code = world["unit_codes"][4]
    answers = [
        await post_scan(client, {"code": code, **IN_SHANGHAI, "device_id": f"friend-{n}"})
        for n in range(6)
    ]
    assert [a["verdict"] for a in answers] == ["genuine"] * 6


@pytest.fixture
def strict_client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> Callable[[FraudPolicy], Awaitable[Client]]:
    async def start(policy: FraudPolicy) -> Client:
        app = create_app(dataclasses.replace(settings, fraud_policy=policy))
        started: Client = await aiohttp_client(app)
        return started

    return start


async def test_a_device_scanning_too_many_codes_is_a_farm(
    client: Client,
    world: dict[str, Any],
    strict_client: Callable[[FraudPolicy], Awaitable[Client]],
) -> None:
    strict = await strict_client(FraudPolicy(farm_codes_per_hour=3))
    answers = [
        await post_scan(strict, {"code": code, **IN_SHANGHAI, "device_id": "farm"})
        for code in world["unit_codes"][:5]
    ]
    assert [a["verdict"] for a in answers] == ["genuine"] * 3 + ["suspicious"] * 2
    assert _flags(answers[3])["device_farm"] == {
        "flag": "device_farm",
        "reason": "codes_per_hour",
        "count": 4,
        "limit": 3,
    }


async def test_a_device_cycling_member_ids_is_a_farm(
    client: Client,
    world: dict[str, Any],
    strict_client: Callable[[FraudPolicy], Awaitable[Client]],
) -> None:
    strict = await strict_client(FraudPolicy(farm_members_per_day=2))
    code = world["unit_codes"][0]
    answers = [
        await post_scan(strict, {"code": code, **IN_SHANGHAI, "device_id": "d", "member_id": m})
        for m in ("m1", "m2", "m3")
    ]
    assert [set(_flags(a)) for a in answers] == [set(), set(), {"device_farm"}]


async def test_a_guesser_is_flagged_then_refused_for_the_cool_down(
    client: Client,
    world: dict[str, Any],
    strict_client: Callable[[FraudPolicy], Awaitable[Client]],
) -> None:
    strict = await strict_client(FraudPolicy(guess_flag_device=2, guess_block_device=4))
    guesses = [f"0000000000000000000{n}" for n in range(4)]
    answers = [await post_scan(strict, {"code": g, "device_id": "guesser"}) for g in guesses]
    assert ["guessing" in _flags(a) for a in answers] == [False, False, True, True]
    assert _flags(answers[2])["guessing"]["invalid_codes"] == 3
    valid = {"code": world["unit_codes"][0], "device_id": "guesser"}
    refused = await strict.post("/v1/scans", json=valid)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) > 800
    assert (await refused.json())["error"]["code"] == "too_many_invalid_codes"
    again = await strict.post("/v1/scans", json=valid)  # this worker remembers the block
    assert again.status == 429
    other_phone = await post_scan(strict, {**valid, "device_id": "someone-else"})
    assert other_phone["verdict"] == "genuine"


async def test_a_territory_change_is_picked_up_without_restart(
    client: Client, world: dict[str, Any]
) -> None:
    before = await post_scan(client, {"code": world["unit_codes"][0], **IN_BEIJING})
    assert "out_of_territory" in _flags(before)
    both = {"type": "MultiPolygon", "coordinates": [[SHANGHAI_SQUARE], NORTH["coordinates"]]}
    assert (await _put_distributor(client, "EAST", both)).status == 200
    await asyncio.sleep(REFERENCE_MAX_AGE_S * 2)
    after = await post_scan(client, {"code": world["unit_codes"][1], **IN_BEIJING})
    assert after["flags"] == []
