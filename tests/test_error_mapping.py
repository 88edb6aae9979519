"""The HTTP answer of each domain error: the status of its class, its code and its message."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from codes.errors import BatchError
from fraud.errors import (
    DistributorError,
    PolicyError,
    ShipmentConflict,
    ShipmentDuplicate,
    TerritoryError,
)
from ingest.http.app import json_errors
from ingest.http.error_mapping import STATUSES, api_error
from rewards.errors import CampaignError, MemberError, StaleCampaign, TimezoneFixed

ANSWERS: list[tuple[Exception, int, str, str]] = [
    (BatchError("quantity must be between 1 and 9"), 422, "validation_failed", ""),
    (TerritoryError("territory: missing"), 422, "invalid_territory", ""),
    (DistributorError("name must be at most 200 characters"), 422, "validation_failed", ""),
    (ShipmentConflict("SHIP_OVERLAP", "17 D1"), 409, "ship_overlap", "SHIP_OVERLAP 17 D1"),
    (ShipmentConflict("AGG_PARENT_FULL"), 409, "agg_parent_full", "AGG_PARENT_FULL"),
    (ShipmentDuplicate("17"), 422, "listed_twice", "SHIP_DUPLICATE 17"),
    (CampaignError("prizes must be a list"), 422, "invalid_campaign", ""),
    (CampaignError("end must be after start", "invalid_period"), 422, "invalid_period", ""),
    (MemberError("a member id is 1 to 64 printable characters"), 422, "invalid_member", ""),
    (MemberError("unknown tier 7", "unknown_tier"), 422, "unknown_tier", ""),
    (
        TimezoneFixed("the campaign runs in Asia/Shanghai"),
        409,
        "timezone_fixed",
        "the campaign runs in Asia/Shanghai: a campaign's time zone cannot change",
    ),
]


@pytest.mark.parametrize(("error", "status", "code", "message"), ANSWERS)
def test_each_domain_error_has_its_status_and_code(
    error: Exception, status: int, code: str, message: str
) -> None:
    answer = api_error(error)
    assert (answer.status, answer.error_code) == (status, code)
    assert answer.message == (message or str(error))
    assert api_error(error, "in other words").message == "in other words"


def test_every_class_of_the_table_is_checked() -> None:
    assert {type(error) for error, *_ in ANSWERS} == set(STATUSES)


async def _answer(error: Exception) -> tuple[int, object]:
    async def failing(request: web.Request) -> web.StreamResponse:
        raise error

    response = await json_errors(failing, "PUT", "/v1/x")(make_mocked_request("PUT", "/v1/x"))
    assert isinstance(response, web.Response)
    assert response.text is not None
    return response.status, orjson.loads(response.text)


async def test_a_handler_lets_domain_errors_propagate_to_their_answer() -> None:
    status, body = await _answer(TimezoneFixed("the campaign runs in Asia/Shanghai"))
    assert status == 409
    assert body == {
        "error": {
            "code": "timezone_fixed",
            "message": "the campaign runs in Asia/Shanghai: a campaign's time zone cannot change",
        }
    }


@pytest.mark.parametrize("error", [StaleCampaign("reload it"), PolicyError("unknown key")])
async def test_a_domain_error_without_a_status_is_an_internal_error(error: Exception) -> None:
    status, body = await _answer(error)
    assert (status, body) == (500, {"error": {"code": "internal", "message": "internal error"}})
