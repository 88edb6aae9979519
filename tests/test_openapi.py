"""The OpenAPI document against the router: every route described, nothing described that is
not routed, the same path parameters; the document as served; and what the fuzzer found the
handlers doing other than the document says, each case pinned down."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema_rs import Draft202012Validator
from schemathesis.core.result import Err

from ingest.config import Settings
from ingest.http.api.openapi import EXAMPLE_CAMPAIGN, EXAMPLES, document
from ingest.http.app import create_app
from tests.helpers import ADMIN

_PARAMETER = re.compile(r"{(\w+)(?::[^}]*)?}")
_METHODS = ("get", "head", "post", "put", "patch", "delete")


def _routed(app: web.Application) -> dict[tuple[str, str], set[str]]:
    """(method, path) of every route but the last (the JSON 404/405), with its parameters."""
    routed = {}
    for route in app.router.routes():
        if route.method != "*" and route.resource is not None:
            path = route.resource.canonical
            routed[(route.method, path)] = set(_PARAMETER.findall(path))
    return routed


def _described(doc: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    described = {}
    for path, operations in doc["paths"].items():
        for method in _METHODS:
            if method in operations:
                parameters = operations[method].get("parameters", [])
                names = {p["name"] for p in parameters if p["in"] == "path"}
                described[(method.upper(), path)] = names
    return described


def test_every_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    routed, described = _routed(create_app(settings)), _described(document(settings))
    assert sorted(set(routed) - set(described)) == [], "routes the document lacks"
    assert sorted(set(described) - set(routed)) == [], "operations no route serves"
    for key, names in routed.items():
        assert described[key] == names, f"{key}: path parameters"
        assert set(_PARAMETER.findall(key[1])) == names


def test_document_is_openapi_3_1_and_every_operation_loads(tmp_path: Path) -> None:
    doc = document(Settings(data_dir=tmp_path))
    assert doc["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()
    loaded = list(schema.get_all_operations())
    assert [result for result in loaded if isinstance(result, Err)] == []
    assert len(loaded) == len(_described(doc))


def test_document_states_the_servers_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_batch_quantity=500, member_tiers=3)
    schemas = document(settings)["components"]["schemas"]
    assert schemas["BatchOrder"]["properties"]["quantity"]["maximum"] == 500
    assert schemas["MemberTierInput"]["properties"]["tier"]["maximum"] == 2


@pytest.mark.redis
async def test_served_publicly_as_json(client: TestClient[Any, Any], settings: Settings) -> None:
    reply = await client.get("/openapi.json")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert await reply.json() == document(settings)


@pytest.mark.redis
@pytest.mark.parametrize(
    ("field", "value"),
    [("skus", ""), ("batches", 0), ("batches", {}), ("tier_weights", []), ("tier_weights", False)],
)
async def test_a_campaign_field_of_the_wrong_type_is_refused(
    client: TestClient[Any, Any], field: str, value: object
) -> None:
    """The document says a list (skus, batches) or an object (tier_weights), or null; another
    falsy value was read as empty, so a request the document forbids was taken."""
    campaign = copy.deepcopy(EXAMPLES["CampaignInput"])
    campaign["batches"] = ["B0000000001"]  # covers something whatever skus is
    target = campaign["prizes"][0] if field == "tier_weights" else campaign
    target[field] = value
    reply = await client.put(f"/v1/campaigns/{EXAMPLE_CAMPAIGN}", json=campaign, headers=ADMIN)
    assert reply.status == 422, await reply.text()
    reply = await client.get(f"/v1/campaigns/{EXAMPLE_CAMPAIGN}", headers=ADMIN)
    assert reply.status == 404


@pytest.mark.redis
async def test_answers_are_as_documented(client: TestClient[Any, Any], settings: Settings) -> None:
    """A scan, a token issued and the tokens listed, each against its operation's schema: the
    fields other changes add (``not_drawn``, a token's id and expiry) must be in the document."""
    doc = document(settings)
    token = {**EXAMPLES["TokenInput"], "expires_in_s": 3600}
    calls = [
        ("post", "/v1/scans", EXAMPLES["ScanRequest"], {}, 200),
        ("post", "/v1/tokens", token, ADMIN, 201),
        ("get", "/v1/tokens", None, ADMIN, 200),
    ]
    for method, path, body, headers, status in calls:
        reply = await client.request(method, path, json=body, headers=headers)
        assert reply.status == status, await reply.text()
        answer = doc["paths"][path][method]["responses"][str(status)]
        schema = {
            **answer["content"]["application/json"]["schema"],
            "components": doc["components"],
        }
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(await reply.json())]
        assert errors == [], f"{method} {path}"
