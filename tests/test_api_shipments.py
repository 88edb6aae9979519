"""Aggregation and shipments: all or nothing, with conflicts named."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import ADMIN, batch_codes, order_batch, post_scan
from tests.test_api_fraud import IN_SHANGHAI, put_east_and_north

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]


@pytest.fixture
async def goods(client: Client) -> dict[str, Any]:
    await put_east_and_north(client)
    units = await order_batch(client, quantity=20)
    cases = await order_batch(client, quantity=3, kind="case")
    return {
        "units": units,
        "unit_codes": await batch_codes(client, units["batch_id"], limit=20),
        "case_codes": await batch_codes(client, cases["batch_id"], limit=3),
    }


async def _post(client: Client, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    reply = await client.post(path, json=body, headers=ADMIN)
    return reply.status, await reply.json()


async def _scan_flags(client: Client, code: str) -> list[str]:
    answer = await post_scan(client, {"code": code, **IN_SHANGHAI})
    return [flag["flag"] for flag in answer["flags"]]


async def test_shipping_a_case_ships_what_it_holds(client: Client, goods: dict[str, Any]) -> None:
    units, [case, *_] = goods["unit_codes"], goods["case_codes"]
    assert (await _post(client, "/v1/aggregations", {"parent": case, "children": units[:4]}))[
        0
    ] == 201
    status, shipped = await _post(
        client, "/v1/shipments", {"distributor_id": "EAST", "codes": [case]}
    )
    assert status == 201
    assert shipped["codes_shipped"] == 5
    assert shipped["shipment_id"].startswith("S")
    assert await _scan_flags(client, units[3]) == []
    assert await _scan_flags(client, units[4]) == ["not_shipped"]


async def test_a_shipment_with_one_bad_code_changes_nothing(
    client: Client, goods: dict[str, Any]
) -> None:
    units = goods["unit_codes"]
    broken = units[1][:-1] + ("1" if units[1].endswith("0") else "0")  # its check fails
    status, error = await _post(
        client, "/v1/shipments", {"distributor_id": "EAST", "codes": [units[0], broken]}
    )
    assert status == 422
    assert error["error"]["code"] == "invalid_codes"
    assert "[1]" in error["error"]["message"]
    assert await _scan_flags(client, units[0]) == ["not_shipped"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"distributor_id": "NOWHERE", "codes": ["X"]}, 422, "invalid_codes"),
        ({"distributor_id": "EAST", "codes": []}, 422, "validation_failed"),
        ({"distributor_id": "EAST"}, 422, "validation_failed"),
        ({"distributor_id": "EAST", "batch_id": "B0000000000"}, 422, "unknown_batch"),
        ({"distributor_id": "EAST", "codes": "abc"}, 422, "validation_failed"),
        ({"codes": ["X"]}, 422, "validation_failed"),
    ],
)
async def test_bad_shipments_are_refused(
    client: Client, goods: dict[str, Any], body: dict[str, Any], status: int, code: str
) -> None:
    reply_status, error = await _post(client, "/v1/shipments", body)
    assert (reply_status, error["error"]["code"]) == (status, code)


async def test_an_unknown_distributor_is_refused(client: Client, goods: dict[str, Any]) -> None:
    status, error = await _post(
        client, "/v1/shipments", {"distributor_id": "NOWHERE", "codes": goods["unit_codes"][:1]}
    )
    assert (status, error["error"]["code"]) == (422, "unknown_distributor")


async def test_a_serial_range_of_a_batch_ships_by_serials(
    client: Client, goods: dict[str, Any]
) -> None:
    units = goods["units"]
    first = units["first_serial"]
    body = {
        "distributor_id": "EAST",
        "batch_id": units["batch_id"],
        "serial_from": first + 5,
        "serial_to": first + 9,
    }
    status, shipped = await _post(client, "/v1/shipments", body)
    assert (status, shipped["codes_shipped"]) == (201, 5)
    codes = goods["unit_codes"]
    assert [await _scan_flags(client, codes[n]) for n in (4, 5, 9, 10)] == [
        ["not_shipped"],
        [],
        [],
        ["not_shipped"],
    ]
    outside = {**body, "serial_to": units["last_serial"] + 1}
    status, error = await _post(client, "/v1/shipments", outside)
    assert status == 422
    assert "serial_to" in error["error"]["message"]


async def test_a_code_ships_once(client: Client, goods: dict[str, Any]) -> None:
    code = goods["unit_codes"][0]
    await _post(client, "/v1/shipments", {"distributor_id": "EAST", "codes": [code]})
    status, error = await _post(
        client, "/v1/shipments", {"distributor_id": "NORTH", "codes": [code]}
    )
    assert (status, error["error"]["code"]) == (409, "ship_overlap")
    assert code in error["error"]["message"]
    assert "EAST" in error["error"]["message"]


async def test_a_unit_listed_alone_and_in_its_case_is_refused(
    client: Client, goods: dict[str, Any]
) -> None:
    units, case = goods["unit_codes"], goods["case_codes"][0]
    await _post(client, "/v1/aggregations", {"parent": case, "children": units[:2]})
    status, error = await _post(
        client, "/v1/shipments", {"distributor_id": "EAST", "codes": [case, units[1]]}
    )
    assert (status, error["error"]["code"]) == (422, "listed_twice")
    assert await _scan_flags(client, units[0]) == ["not_shipped"]


async def test_a_unit_belongs_to_one_case_until_that_case_is_released(
    client: Client, goods: dict[str, Any]
) -> None:
    units, cases = goods["unit_codes"], goods["case_codes"]
    assert (await _post(client, "/v1/aggregations", {"parent": cases[0], "children": units[:3]}))[
        0
    ] == 201
    status, error = await _post(
        client, "/v1/aggregations", {"parent": cases[1], "children": units[2:4]}
    )
    assert (status, error["error"]["code"]) == (409, "agg_child_taken")
    assert units[2] in error["error"]["message"]
    status, error = await _post(
        client, "/v1/aggregations", {"parent": cases[0], "children": units[5:6]}
    )
    assert (status, error["error"]["code"]) == (409, "agg_parent_full")
    released = await client.delete(f"/v1/aggregations/{cases[0]}", headers=ADMIN)
    assert (await released.json())["released"] == 3
    assert (await _post(client, "/v1/aggregations", {"parent": cases[1], "children": units[2:4]}))[
        0
    ] == 201
    again = await client.delete(f"/v1/aggregations/{cases[0]}", headers=ADMIN)
    assert again.status == 404


@pytest.mark.parametrize(
    ("parent_of", "children_of", "code"),
    [
        ("unit", [1], "validation_failed"),
        ("case", [0, 0], "invalid_codes"),
        ("case", [], "validation_failed"),
    ],
)
async def test_bad_aggregations_are_refused(
    client: Client, goods: dict[str, Any], parent_of: str, children_of: list[int], code: str
) -> None:
    parent = goods["unit_codes"][0] if parent_of == "unit" else goods["case_codes"][0]
    children = [goods["unit_codes"][n] for n in children_of]
    status, error = await _post(
        client, "/v1/aggregations", {"parent": parent, "children": children}
    )
    assert (status, error["error"]["code"]) == (422, code)


async def test_a_shipped_case_takes_no_new_codes(client: Client, goods: dict[str, Any]) -> None:
    case = goods["case_codes"][2]
    await _post(client, "/v1/shipments", {"distributor_id": "EAST", "codes": [case]})
    status, error = await _post(
        client, "/v1/aggregations", {"parent": case, "children": goods["unit_codes"][:1]}
    )
    assert (status, error["error"]["code"]) == (409, "agg_parent_shipped")


async def test_shipments_need_a_token(client: Client, goods: dict[str, Any]) -> None:
    reply = await client.post("/v1/shipments", json={"distributor_id": "EAST", "codes": ["X"]})
    assert reply.status == 401
