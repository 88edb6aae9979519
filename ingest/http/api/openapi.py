"""The OpenAPI 3.1 description of every route, served at ``GET /openapi.json``.

Built in code from the handlers' own limits and the server's settings (body sizes, batch
quantity, member tiers), so the numbers it states are the numbers enforced.
``tests/test_openapi.py`` compares it with the router; ``tests/test_fuzz_api.py`` fuzzes the
running API from it. Every GET also answers HEAD (aiohttp adds it): listed beside each GET.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, get_args

import orjson
from aiohttp import web

from codes.batches import BatchKind, BatchStatus
from codes.errors import CodeRejection
from codes.export import ExportFormat
from fraud import distributors, territory
from fraud.verdicts import MAX_RISK, Verdict
from ingest.config import Settings
from ingest.http.api import alerts, campaigns, shipments
from ingest.http.api import distributors as distributor_api
from ingest.http.api.scans import MAX_BULK_LINES, NDJSON_TYPES
from ingest.http.state import SETTINGS
from ingest.http.tokens import MAX_LIFETIME_S, Role
from ingest.scan.request import MAX_ACCURACY_M, MAX_CODE_LENGTH, MAX_ID_LENGTH
from rewards import campaigns as campaign_rules
from rewards import members
from rewards.campaigns import PrizeKind
from rewards.member_token import MAX_TOKEN_LENGTH, TokenState

routes = web.RouteTableDef()

Schema = dict[str, Any]
_JSON = "application/json"
_NDJSON = "application/x-ndjson"
_NDJSON_TYPES = tuple(t for t in NDJSON_TYPES if t)  # and no Content-Type at all
_LINE_TEXT = 256  # JsonFields.text's default limit
_BATCH_TEXT = 64
_CAMPAIGN_TEXT = 200
_CLIENT_TS_LENGTH = 40
_QUERY_INT_DIGITS = 12


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.StreamResponse:
    """Public: this document, for client generators and fuzzers."""
    body = _document_bytes(request.app[SETTINGS])
    return web.Response(body=body, content_type=_JSON)


def _document_bytes(settings: Settings) -> bytes:
    return _encoded(
        settings.max_body_bytes,
        settings.max_bulk_bytes,
        settings.max_batch_quantity,
        settings.member_tiers,
    )


@functools.cache
def _encoded(max_body: int, max_bulk: int, max_quantity: int, tiers: int) -> bytes:
    return orjson.dumps(_build(max_body, max_bulk, max_quantity, tiers))


def document(settings: Settings) -> Schema:
    """The document for a server with ``settings``, as a fresh dict."""
    return orjson.loads(_document_bytes(settings))  # type: ignore[no-any-return]


# --- examples, of requests as clients send them (the fuzz test sends them first) ------------

EXAMPLE_CODE = "7ZQ3M8K2D4X9W1T5V6NB"
EXAMPLE_CAMPAIGN = "spring-2027"
EXAMPLE_MEMBER = "m-1001"
EXAMPLES: dict[str, Any] = {
    "BatchOrder": {
        "sku": "BEER-500",
        "gtin": "4006381333931",
        "quantity": 1000,
        "kind": "unit",
        "line_id": "L1",
    },
    "ScanRequest": {
        "code": EXAMPLE_CODE,
        "lat": 31.2304,
        "lon": 121.4737,
        "accuracy_m": 12.5,
        "device_id": "d-6f2a",
        "member_id": EXAMPLE_MEMBER,
        "scan_id": "s-0001",
        "client_ts": "2027-06-01T12:00:00+08:00",
    },
    "DistributorInput": {
        "name": "All of China",
        "territory": {
            "type": "Polygon",
            "coordinates": [[[73, 18], [135, 18], [135, 54], [73, 54], [73, 18]]],
        },
    },
    "CampaignInput": {
        "name": "Spring 2027",
        "timezone": "Asia/Shanghai",
        "start": "2027-03-01T00:00:00+08:00",
        "end": "2027-05-31T23:59:59+08:00",
        "skus": ["BEER-500"],
        "prizes": [
            {
                "id": "cash-5",
                "kind": "cash",
                "value": 500,
                "total_budget": 1000,
                "daily_cap": 50,
                "base_probability": 0.01,
            },
            {
                "id": "points-10",
                "kind": "points",
                "value": 10,
                "total_budget": 100_000,
                "base_probability": 0.2,
                "tier_weights": {"2": 1.5},
            },
        ],
    },
    "ShipmentInput": {"distributor_id": "CN", "codes": [EXAMPLE_CODE]},
    "AggregationInput": {"parent": EXAMPLE_CODE, "children": [EXAMPLE_CODE[::-1]]},
    "MemberTierInput": {"tier": 2},
    "TokenInput": {"role": "line", "name": "line-7"},
}


# --- schema helpers -------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A closed object: these fields only (the handlers reject unknown ones)."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _nullable(schema: Schema) -> Schema:
    """An optional field, where ``null`` means absent, as the handlers read it."""
    widened = dict(schema)
    widened["type"] = [schema["type"], "null"]
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def _text(max_length: int, min_length: int = 0, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", "maxLength": max_length, **extra}
    if min_length:
        schema["minLength"] = min_length
    return schema


def _integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _number(minimum: float, maximum: float | None = None) -> Schema:
    schema: Schema = {"type": "number", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _array(items: Schema, min_items: int = 0, max_items: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def _enum(values: Any) -> Schema:
    return {"type": "string", "enum": [str(value) for value in values]}


def _closed(properties: dict[str, Schema]) -> Schema:
    """A response object: every field always there, no others."""
    return _object(properties)


_PRINTABLE = "printable characters only"
_STRING: Schema = {"type": "string"}
_INTEGER: Schema = {"type": "integer"}


# --- components ------------------------------------------------------------------------------


def _schemas(max_quantity: int, tiers: int) -> dict[str, Schema]:
    string, integer, boolean = _STRING, _INTEGER, {"type": "boolean"}
    batch_kind, prize_kind = _enum(BatchKind), _enum(PrizeKind)
    position = {
        "type": "array",
        "description": "[longitude, latitude] or [longitude, latitude, altitude]",
        "prefixItems": [_number(-180, 180), _number(-90, 90), {"type": "number"}],
        "minItems": 2,
        "maxItems": 3,
    }
    ring = {
        **_array(position, 4, territory.MAX_RING_VERTICES),
        "description": "closed: the last position repeats the first; not of zero area",
    }
    polygon = _array(ring, 1)
    bbox = {
        "type": "array",
        "items": {"type": "number"},
        "anyOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
    }
    tier_key = {"type": "string", "pattern": "^[0-9]{1,3}$"}
    prize_out = _closed(
        {
            "id": string,
            "kind": prize_kind,
            "value": integer,
            "total_budget": integer,
            "daily_cap": integer,
            "guaranteed_daily": integer,
            "base_probability": {"type": "number"},
            "tier_weights": {"type": "object", "additionalProperties": {"type": "number"}},
            "min_tier": integer,
            "high_value": boolean,
        }
    )
    count = _integer(0, campaign_rules.MAX_COUNT)
    name = {"type": "string", "minLength": 1, "description": _PRINTABLE}
    campaign_fields = {
        "name": string,
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "timezone": string,
        "skus": _array(string),
        "batches": _array(string),
        "member_daily_win_limit": integer,
        "guarantee_window_minutes": integer,
        "prizes": _array(_ref("PrizeView")),
        "member_token": _enum(campaign_rules.MEMBER_TOKEN_OPTIONS),
    }
    batch_view = {
        "batch_id": string,
        "sku": string,
        "gtin": string,
        "kind": batch_kind,
        "line_id": string,
        "key_id": integer,
        "first_serial": integer,
        "quantity": integer,
        "created_ms": integer,
        "status": _enum(BatchStatus),
        "last_serial": integer,
    }
    scan_fields = {
        "lat": _nullable(_number(-90, 90)),
        "lon": _nullable(_number(-180, 180)),
        "accuracy_m": _nullable(_number(0, MAX_ACCURACY_M)),
        "member_id": _nullable(_text(MAX_ID_LENGTH)),
        "member_token": _nullable(
            _text(
                MAX_TOKEN_LENGTH,
                description="the brand's signed member token: its member is the scan's",
            )
        ),
        "device_id": _nullable(_text(MAX_ID_LENGTH)),
        "scan_id": _nullable(
            _text(
                MAX_ID_LENGTH,
                description="the client's id of the scan: a retry with the "
                "same id gets the first answer again",
            )
        ),
        "client_ts": _nullable(
            _text(_CLIENT_TS_LENGTH, format="date-time", description="with a zone; 2000 to 2100")
        ),
    }
    both_or_neither = [
        {
            "if": {"required": [one], "properties": {one: {"type": "number"}}},
            "then": {"required": [other], "properties": {other: {"type": "number"}}},
        }
        for one, other in (("lat", "lon"), ("lon", "lat"))
    ]
    return {
        "Error": _closed({"error": _ref("ErrorDetail")}),
        "ErrorDetail": _closed(
            {
                "code": {"type": "string", "description": "stable, for machines"},
                "message": {"type": "string", "description": "for people"},
            }
        ),
        "LineError": _closed(
            {
                "line": {"type": "integer", "minimum": 1, "description": "1-based input line"},
                "error": _ref("ErrorDetail"),
            }
        ),
        "BatchOrder": _object(
            {
                "sku": _text(_BATCH_TEXT, 1, description=_PRINTABLE),
                "gtin": _text(14, description="GTIN-8, 12, 13 or 14 with its check digit"),
                "quantity": _integer(1, max_quantity),
            },
            {
                "kind": _nullable({**batch_kind, "default": "unit"}),
                "line_id": _nullable(_text(_BATCH_TEXT, description=_PRINTABLE)),
            },
        ),
        "Batch": _closed({**batch_view, "codes_url": string}),
        "ScanRequest": {
            **_object({"code": _text(MAX_CODE_LENGTH, 1)}, scan_fields),
            "description": "lat and lon go together: both or neither",
            "allOf": both_or_neither,
        },
        "ScanResult": _closed(
            {
                "scan_id": string,
                "verdict": _enum(v.label for v in Verdict),
                "genuine": boolean,
                "risk": _integer(0, MAX_RISK),
                "first_scan": boolean,
                "scan_count": integer,
                "distinct_devices": integer,
                "flags": _array(
                    {"type": "object", "required": ["flag"], "properties": {"flag": string}}
                ),
                "product": {
                    "oneOf": [
                        {"type": "null"},
                        _closed(
                            {
                                "code": string,
                                "sku": string,
                                "gtin": string,
                                "batch_id": string,
                                "kind": batch_kind,
                            }
                        ),
                    ]
                },
                "prize": {
                    "oneOf": [
                        {"type": "null"},
                        _closed(
                            {
                                "prize_id": string,
                                "kind": prize_kind,
                                "value": integer,
                                "campaign_id": string,
                            }
                        ),
                    ]
                },
                "not_drawn": {
                    **_nullable(_enum(t.value for t in TokenState if t is not TokenState.VALID)),
                    "description": "why a campaign covering the code did not draw for the "
                    "scan: its member token",
                },
            }
        ),
        "CodeCheck": {
            "oneOf": [
                _closed(
                    {
                        "valid": {"const": True},
                        "code": string,
                        "serial": integer,
                        "batch_id": string,
                        "sku": string,
                        "gtin": string,
                        "kind": batch_kind,
                        "status": _enum(BatchStatus),
                        "digital_link": string,
                    }
                ),
                _closed(
                    {
                        "valid": {"const": False},
                        "reason": _enum(get_args(CodeRejection)),
                        "message": string,
                    }
                ),
            ]
        },
        "Territory": {
            "description": "a GeoJSON Polygon or MultiPolygon geometry in lon/lat (RFC 7946); "
            f"at most {territory.MAX_TOTAL_VERTICES} positions in all",
            "oneOf": [
                _object({"type": {"const": "Polygon"}, "coordinates": polygon}, {"bbox": bbox}),
                _object(
                    {
                        "type": {"const": "MultiPolygon"},
                        "coordinates": _array(polygon, 1, territory.MAX_POLYGONS),
                    },
                    {"bbox": bbox},
                ),
            ],
        },
        "DistributorInput": _object(
            {
                "name": _text(distributors.MAX_NAME_LENGTH, 1, description=_PRINTABLE),
                "territory": _ref("Territory"),
            }
        ),
        "Distributor": _closed(
            {
                "distributor_id": string,
                "name": string,
                "territory": {
                    "type": "object",
                    "required": ["type", "coordinates"],
                    "properties": {
                        "type": {"enum": ["Polygon", "MultiPolygon"]},
                        "coordinates": {"type": "array"},
                    },
                },
                "updated_ms": integer,
            }
        ),
        "PrizeInput": _object(
            {
                "id": {"type": "string", "pattern": f"^{campaign_rules.ID_PATTERN}$"},
                "kind": prize_kind,
                "value": _integer(1, campaign_rules.MAX_COUNT),
                "total_budget": count,
                "base_probability": _number(0, 1),
            },
            {
                "daily_cap": _nullable({**count, "description": "defaults to total_budget"}),
                "guaranteed_daily": _nullable(
                    {**count, "description": "at most daily_cap; default 0"}
                ),
                "tier_weights": _nullable(
                    {
                        "type": "object",
                        "propertyNames": tier_key,
                        "additionalProperties": _number(0),
                        "description": f"tier ({0} to {tiers - 1}) to weight; 1 where unlisted",
                    }
                ),
                "min_tier": _nullable(_integer(0, tiers - 1)),
                "high_value": _nullable(
                    {"type": "boolean", "description": "default: true for an item"}
                ),
            },
        ),
        "PrizeView": prize_out,
        "CampaignInput": {
            **_object(
                {
                    "name": _text(_CAMPAIGN_TEXT, 1, description=_PRINTABLE),
                    "timezone": _text(
                        _CAMPAIGN_TEXT, 1, description="an IANA zone, e.g. Asia/Shanghai"
                    ),
                    "start": _text(_CAMPAIGN_TEXT, 1, format="date-time"),
                    "end": _text(
                        _CAMPAIGN_TEXT,
                        1,
                        format="date-time",
                        description=f"after start, at most {campaign_rules.MAX_DAYS} days on",
                    ),
                    "prizes": _array(_ref("PrizeInput"), 1, campaign_rules.MAX_PRIZES),
                },
                {
                    "skus": _nullable(_array(name, 0, campaign_rules.MAX_LIST)),
                    "batches": _nullable(_array(name, 0, campaign_rules.MAX_LIST)),
                    "member_daily_win_limit": _nullable(_integer(1, campaign_rules.MAX_COUNT)),
                    "guarantee_window_minutes": _nullable(_integer(1, 24 * 60)),
                    "member_token": _nullable(
                        {
                            **_enum(campaign_rules.MEMBER_TOKEN_OPTIONS),
                            "description": "required: only scans with a valid signed member "
                            "token draw (default optional)",
                        }
                    ),
                },
            ),
            "description": "covers at least one sku or batch; for every tier the prizes' "
            "base_probability x tier weight add up to at most 1",
        },
        "Campaign": _closed({"campaign_id": string, **campaign_fields, "version": integer}),
        "CampaignStatus": _closed(
            {
                "campaign_id": string,
                **campaign_fields,
                "version": integer,
                "active": boolean,
                "budgets": _array(
                    _closed(
                        {
                            "prize_id": string,
                            "awarded": integer,
                            "remaining_budget": integer,
                            "awarded_today": integer,
                            "remaining_today": integer,
                            "released_today": integer,
                        }
                    )
                ),
            }
        ),
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": _enum(("ok", "degraded", "unavailable")),
                "redis": string,
                "clickhouse": string,
            },
        },
    }


# --- responses -------------------------------------------------------------------------------

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the body is not JSON, or could not be read"),
    401: ("Unauthorized", "no bearer token, or not a valid one"),
    403: ("Forbidden", "the token's role does not allow this"),
    404: ("NotFound", "no such resource"),
    409: ("Conflict", "the request conflicts with the resource's state"),
    413: ("PayloadTooLarge", "the body is larger than this endpoint takes"),
    415: ("UnsupportedMediaType", "the body's Content-Type is not one this endpoint reads"),
    422: ("ValidationFailed", "a field is missing, of the wrong type or out of range"),
    429: ("TooManyRequests", "this client is refused for a while"),
    503: ("Unavailable", "a backing service is down or the server is saturated"),
}


def _error_responses() -> dict[str, Schema]:
    answers: dict[str, Schema] = {}
    for status, (name, description) in _ERRORS.items():
        answer: Schema = {
            "description": description,
            "content": {_JSON: {"schema": _ref("Error")}},
        }
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        answers[name] = answer
    return answers


def _json(schema: Schema, description: str = "OK", **headers: Schema) -> Schema:
    answer: Schema = {"description": description, "content": {_JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _created_or_replaced(schema: Schema) -> dict[str, Schema]:
    """A PUT's answers: 201 when it made the resource, 200 when it replaced it."""
    return {"200": _json(schema, "Replaced"), "201": _json(schema, "Created")}


def _list_of(name: str, fields: dict[str, Schema]) -> Schema:
    """``{name: [...]}``: each item has ``fields`` and the ``url`` of the whole resource."""
    return _closed({name: _array(_closed({**fields, "url": _STRING}))})


def _errors(*statuses: int) -> dict[str, Schema]:
    return {
        str(status): {"$ref": f"#/components/responses/{_ERRORS[status][0]}"} for status in statuses
    }


# --- operations ------------------------------------------------------------------------------


def _path_parameter(
    name: str, description: str, example: str | None = None, **schema: object
) -> Schema:
    parameter: Schema = {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, **schema},
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    role: Role | None = None,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    body_types: tuple[str, ...] = (_JSON,),
    example: object = None,
    tag: str,
) -> Schema:
    """An operation; with ``role`` it needs a bearer token of that role (or admin), and may
    answer 401 (no valid token) and 403 (a token of another role)."""
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        media: Schema = {"schema": body}
        if example is not None:
            media["example"] = example
        content = dict.fromkeys(body_types, media)
        operation["requestBody"] = {"required": True, "content": content}
    answers = dict(responses)
    if role is None:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": [role.value]}]
        operation["description"] = f"Needs a token with the {role.value} role" + (
            "." if role is Role.ADMIN else " (an admin token will do)."
        )
        answers.update(_errors(401, 403))
    operation["responses"] = dict(sorted(answers.items()))
    return operation


def _json_body_errors() -> dict[str, Schema]:
    return _errors(400, 413, 415, 422, 503)


def _paths(max_body: int, max_bulk: int) -> dict[str, dict[str, Schema]]:
    batch_id = _path_parameter("batch_id", "the batch's id")
    campaign_id = _path_parameter(
        "campaign_id",
        "letters, digits, '_' or '-'",
        EXAMPLE_CAMPAIGN,
        pattern=f"^{campaign_rules.ID_PATTERN}$",
    )
    distributor_id = _path_parameter(
        "distributor_id",
        "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        EXAMPLES["ShipmentInput"]["distributor_id"],
        pattern=f"^{distributors.ID_PATTERN}$",
    )
    member_id = _path_parameter(
        "member_id",
        f"1 to {members.MAX_ID_LENGTH} {_PRINTABLE}",
        EXAMPLE_MEMBER,
        maxLength=members.MAX_ID_LENGTH,
    )
    shown_batch = _json(_ref("Batch"))
    not_found = _errors(404, 503)
    return {
        "/healthz": {
            "get": {
                **_operation(
                    "health",
                    "Liveness and readiness: 503 only when scans cannot be answered at all",
                    {
                        "200": _json(_ref("Health"), "scans are answered (ok or degraded)"),
                        "503": _json(_ref("Health"), "scans cannot be answered (Redis is down)"),
                    },
                    tag="operations",
                ),
                "description": "Anyone sees each component's state in a word; an admin token "
                "also shows errors, backlogs, sinks and partitions.",
                "security": [{}, {"bearer": [Role.ADMIN.value]}],
            }
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics (the live campaigns' prize budgets among them)",
                {
                    "200": {
                        "description": "the Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                role=Role.METRICS,
                tag="operations",
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                {"200": _json({"type": "object"})},
                tag="operations",
            )
        },
        "/v1/alerts": {
            "get": _operation(
                "list_alerts",
                "The open fraud alerts, newest activity first (from ClickHouse)",
                {
                    "200": _json(
                        _closed({"alerts": _array({"type": "object"})}),
                    ),
                    **_errors(422, 503),
                },
                role=Role.ADMIN,
                parameters=[
                    _query("kind", "only alerts of this kind", _enum(alerts.KINDS)),
                    _query("distributor_id", "only this distributor's", {"type": "string"}),
                    _query("limit", "at most this many (100)", _integer(1, alerts.MAX_LIMIT)),
                ],
                tag="fraud",
            )
        },
        "/v1/batches": {
            "post": _operation(
                "create_batch",
                "Order a batch of codes",
                {
                    "201": _json(
                        _ref("Batch"),
                        "Created",
                        Location={"description": "the batch's URL", "schema": {"type": "string"}},
                    ),
                    **_json_body_errors(),
                },
                role=Role.LINE,
                body=_ref("BatchOrder"),
                example=EXAMPLES["BatchOrder"],
                tag="batches",
            )
        },
        "/v1/batches/{batch_id}": {
            "get": _operation(
                "show_batch",
                "A batch",
                {"200": shown_batch, **not_found},
                role=Role.LINE,
                parameters=[batch_id],
                tag="batches",
            )
        },
        "/v1/batches/{batch_id}/revoke": {
            "post": _operation(
                "revoke_batch",
                "Revoke a batch: its codes then scan as revoked",
                {"200": shown_batch, **not_found},
                role=Role.ADMIN,
                parameters=[batch_id],
                tag="batches",
            )
        },
        "/v1/batches/{batch_id}/codes": {
            "get": _operation(
                "download_codes",
                "The batch's codes for the printer, streamed with an exact Content-Length",
                {
                    "200": {
                        "description": "one code (txt), Digital Link URL (url) or "
                        "serial,code,url row (csv) a line",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(404, 409, 422, 503),
                },
                role=Role.LINE,
                parameters=[
                    batch_id,
                    _query("format", "txt (default), csv or url", _enum(ExportFormat)),
                    _query(
                        "offset",
                        "skip this many codes (at most the quantity)",
                        _integer(0, 10**_QUERY_INT_DIGITS - 1),
                    ),
                    _query(
                        "limit",
                        "at most this many codes (all the rest)",
                        _integer(0, 10**_QUERY_INT_DIGITS - 1),
                    ),
                ],
                tag="batches",
            )
        },
        "/v1/campaigns": {
            "get": _operation(
                "list_campaigns",
                "The campaigns",
                {
                    "200": _json(
                        _list_of(
                            "campaigns",
                            {
                                "campaign_id": _STRING,
                                "name": _STRING,
                                "active": {"type": "boolean"},
                            },
                        )
                    ),
                    **_errors(503),
                },
                role=Role.ADMIN,
                tag="rewards",
            )
        },
        "/v1/campaigns/{campaign_id}": {
            "put": _operation(
                "put_campaign",
                "Create (201) or replace (200) a campaign, as a new version (a body of at "
                f"most {campaigns.MAX_CAMPAIGN_BYTES} bytes)",
                {
                    **_created_or_replaced(_ref("Campaign")),
                    **_errors(400, 404, 413, 422, 503),
                },
                role=Role.ADMIN,
                parameters=[campaign_id],
                body=_ref("CampaignInput"),
                example=EXAMPLES["CampaignInput"],
                tag="rewards",
            ),
            "get": _operation(
                "show_campaign",
                "A campaign with its live budgets",
                {"200": _json(_ref("CampaignStatus")), **not_found},
                role=Role.ADMIN,
                parameters=[campaign_id],
                tag="rewards",
            ),
        },
        "/v1/campaigns/{campaign_id}/fairness": {
            "get": _operation(
                "show_fairness",
                "Public: each day's draw seed hash, and the seeds of the days that are over",
                {
                    "200": _json(
                        _closed(
                            {
                                "campaign_id": {"type": "string"},
                                "timezone": {"type": "string"},
                                "draw_value": {"type": "string"},
                                "days": _array(
                                    _closed(
                                        {
                                            "day": {"type": "string", "format": "date"},
                                            "seed_sha256": {"type": "string"},
                                            "seed": {"type": ["string", "null"]},
                                        }
                                    )
                                ),
                            }
                        )
                    ),
                    **not_found,
                },
                parameters=[campaign_id],
                tag="rewards",
            )
        },
        "/v1/codes/{code}": {
            "get": _operation(
                "verify_code",
                "Check one code without changing anything; a counterfeit is an answer "
                "(valid: false), not an error",
                {"200": _json(_ref("CodeCheck")), **_errors(404, 429, 503)},
                parameters=[_path_parameter("code", "the code, or its Digital Link URL")],
                tag="scans",
            )
        },
        "/v1/distributors": {
            "get": _operation(
                "list_distributors",
                "The distributors (territories at each one's URL)",
                {
                    "200": _json(
                        _list_of(
                            "distributors",
                            {"distributor_id": _STRING, "name": _STRING, "updated_ms": _INTEGER},
                        )
                    ),
                    **_errors(503),
                },
                role=Role.LINE,
                tag="fraud",
            )
        },
        "/v1/distributors/{distributor_id}": {
            "put": _operation(
                "put_distributor",
                "Create (201) or replace (200) a distributor and its territory (a body of "
                f"at most {distributor_api.MAX_DISTRIBUTOR_BYTES} bytes)",
                {
                    **_created_or_replaced(_ref("Distributor")),
                    **_errors(404),
                    **_json_body_errors(),
                },
                role=Role.ADMIN,
                parameters=[distributor_id],
                body=_ref("DistributorInput"),
                example=EXAMPLES["DistributorInput"],
                tag="fraud",
            ),
            "get": _operation(
                "show_distributor",
                "A distributor with its territory",
                {"200": _json(_ref("Distributor")), **not_found},
                role=Role.LINE,
                parameters=[distributor_id],
                tag="fraud",
            ),
        },
        "/v1/members/{member_id}": {
            "put": _operation(
                "put_member",
                "Set a member's tier: created (201) or changed (200)",
                {
                    **_created_or_replaced(_ref("MemberTier")),
                    **_errors(404),
                    **_json_body_errors(),
                },
                role=Role.ADMIN,
                parameters=[member_id],
                body=_ref("MemberTierInput"),
                example=EXAMPLES["MemberTierInput"],
                tag="rewards",
            ),
            "get": _operation(
                "show_member",
                "A member's tier, points and latest awards",
                {"200": _json(_ref("Member")), **_errors(404, 422, 503)},
                role=Role.ADMIN,
                parameters=[member_id],
                tag="rewards",
            ),
        },
        "/v1/scans": {
            "post": _operation(
                "scan",
                "A consumer scan: verified, judged and maybe drawn for a prize",
                {"200": _json(_ref("ScanResult")), **_json_body_errors(), **_errors(429)},
                body=_ref("ScanRequest"),
                example=EXAMPLES["ScanRequest"],
                tag="scans",
            )
        },
        "/v1/scans/bulk": {
            "post": _operation(
                "bulk_scans",
                f"Up to {MAX_BULK_LINES} scans, one JSON object a line (NDJSON, at most "
                f"{max_bulk} bytes): one answer line per non-empty input line, in order; a bad "
                "line gets a LineError, the others are answered",
                {
                    "200": {
                        "description": "one line per non-empty input line: a ScanResult or "
                        "a LineError",
                        "content": {
                            _NDJSON: {
                                "schema": _array({"oneOf": [_ref("ScanResult"), _ref("LineError")]})
                            }
                        },
                    },
                    **_errors(400, 413, 415, 503),
                },
                body=_array(_ref("ScanRequest"), 0, MAX_BULK_LINES),
                example=[EXAMPLES["ScanRequest"], {"code": EXAMPLE_CODE}],
                body_types=_NDJSON_TYPES,
                tag="scans",
            )
        },
        "/v1/shipments": {
            "post": _operation(
                "create_shipment",
                "Ship codes (or a batch's serials) to a distributor; all or nothing",
                {
                    "201": _json(
                        _closed(
                            {
                                "shipment_id": {"type": "string"},
                                "distributor_id": {"type": "string"},
                                "codes_shipped": {"type": "integer"},
                            }
                        ),
                        "Created",
                    ),
                    **_json_body_errors(),
                    **_errors(409),
                },
                role=Role.LINE,
                body=_ref("ShipmentInput"),
                example=EXAMPLES["ShipmentInput"],
                tag="shipments",
            )
        },
        "/v1/aggregations": {
            "post": _operation(
                "aggregate",
                "Pack codes into a case or pallet; all or nothing",
                {
                    "201": _json(
                        _closed({"parent": {"type": "string"}, "children": {"type": "integer"}}),
                        "Created",
                    ),
                    **_json_body_errors(),
                    **_errors(409),
                },
                role=Role.LINE,
                body=_ref("AggregationInput"),
                example=EXAMPLES["AggregationInput"],
                tag="shipments",
            )
        },
        "/v1/aggregations/{parent}": {
            "delete": _operation(
                "release",
                "Empty a case or pallet, so that its codes can be packed again",
                {
                    "200": _json(
                        _closed({"parent": {"type": "string"}, "released": {"type": "integer"}})
                    ),
                    **_errors(404, 422, 503),
                },
                role=Role.LINE,
                parameters=[_path_parameter("parent", "the case's or pallet's code")],
                tag="shipments",
            )
        },
        "/v1/tokens": {
            "post": _operation(
                "create_token",
                "Issue a token, shown this once; only its hash is kept",
                {
                    "201": _json(
                        {
                            **_ref("TokenInfo"),
                            "properties": {"token": {"type": "string"}},
                            "required": ["token"],
                            "unevaluatedProperties": False,
                        },
                        "Created",
                    ),
                    **_json_body_errors(),
                },
                role=Role.ADMIN,
                body=_ref("TokenInput"),
                example=EXAMPLES["TokenInput"],
                tag="tokens",
            ),
            "get": _operation(
                "list_tokens",
                "The tokens that still work, oldest first (not the bootstrap admin token)",
                {
                    "200": _json(
                        _closed(
                            {
                                "tokens": _array(
                                    {**_ref("TokenInfo"), "unevaluatedProperties": False}
                                )
                            }
                        )
                    ),
                    **_errors(503),
                },
                role=Role.ADMIN,
                tag="tokens",
            ),
        },
        "/v1/tokens/{token_id}": {
            "delete": _operation(
                "revoke_token",
                "Revoke a token: it stops working at once",
                {"204": {"description": "Revoked"}, **not_found},
                role=Role.ADMIN,
                parameters=[_path_parameter("token_id", "the token's id (not the token)")],
                tag="tokens",
            )
        },
    }


def _input_schemas(tiers: int) -> dict[str, Schema]:
    code = _text(MAX_CODE_LENGTH)
    code_list = _array(code, 1, shipments.MAX_CODES)
    return {
        "ShipmentInput": {
            "description": "either codes, or a batch with an optional range of its serials",
            "oneOf": [
                _object({"distributor_id": _text(64), "codes": code_list}),
                _object(
                    {"distributor_id": _text(64), "batch_id": _text(64)},
                    {
                        "serial_from": _nullable({"type": "integer"}),
                        "serial_to": _nullable({"type": "integer"}),
                    },
                ),
            ],
        },
        "AggregationInput": _object(
            {"parent": code, "children": _array(code, 1, shipments.MAX_CHILDREN)}
        ),
        "MemberTierInput": _object({"tier": _integer(0, tiers - 1)}),
        "MemberTier": _closed({"member_id": {"type": "string"}, "tier": {"type": "integer"}}),
        "Member": _closed(
            {
                "member_id": {"type": "string"},
                "tier": {"type": "integer"},
                "points_balance": {"type": "integer"},
                "points_by_campaign": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                },
                "recent_awards": _array(
                    {
                        "type": "object",
                        "required": ["campaign_id", "prize_id", "time_ms"],
                        "properties": {
                            "campaign_id": {"type": "string"},
                            "prize_id": {"type": "string"},
                            "time_ms": {"type": "integer"},
                        },
                    }
                ),
            }
        ),
        "TokenInput": {
            **_object(
                {
                    "role": _text(_LINE_TEXT, description="line, admin or metrics"),
                    "name": _text(64, description=_PRINTABLE),
                },
                {
                    "expires_in_s": _nullable(_integer(1, MAX_LIFETIME_S)),
                    "expires_at": _nullable(
                        _text(
                            40,
                            format="date-time",
                            description=f"in the future, at most {MAX_LIFETIME_S} s from now",
                        )
                    ),
                },
            ),
            "description": "expires_in_s or expires_at, not both; with neither the token works "
            "until revoked",
            "not": {
                "required": ["expires_in_s", "expires_at"],
                "properties": {
                    "expires_in_s": {"type": "integer"},
                    "expires_at": {"type": "string"},
                },
            },
        },
        "TokenInfo": {
            "type": "object",
            "required": ["id", "name", "role", "created_at", "expires_at"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "role": _enum(Role),
                "created_at": {"type": "string", "format": "date-time"},
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
    }


def _build(max_body: int, max_bulk: int, max_quantity: int, tiers: int) -> Schema:
    paths = _paths(max_body, max_bulk)
    responses = _error_responses()
    for operations in paths.values():
        if "get" in operations:
            operations["head"] = _head(operations["get"], responses)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanward",
            "version": "1",
            "description": "One item, one code: signed product codes, scan verification, "
            'fraud and rewards. Every error is JSON {"error": {"code", "message"}}, those '
            "refused before any route too (a malformed request 400, headers too large 431, an "
            "unknown Expect 417, a method a path does not take 405 with Allow, no such path "
            f"404). JSON bodies are at most {max_body} bytes unless an operation says otherwise; "
            "a body field an operation does not know is refused (422), a query parameter it "
            "does not know is ignored.",
        },
        "paths": paths,
        "components": {
            "schemas": {**_schemas(max_quantity, tiers), **_input_schemas(tiers)},
            "responses": responses,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from POST /v1/tokens (or the bootstrap admin "
                    "token); its role, line, admin or metrics, is listed on each operation",
                }
            },
        },
    }


def _head(get: Schema, responses: dict[str, Schema]) -> Schema:
    """HEAD of a GET: the same statuses and headers, no body."""
    head = copy.deepcopy(get)
    head["operationId"] = f"{get['operationId']}_head"
    head["summary"] = f"Headers of: {get['summary']}"
    for status, answer in head["responses"].items():
        if "$ref" in answer:
            answer = copy.deepcopy(responses[answer["$ref"].rsplit("/", 1)[1]])
        answer.pop("content", None)
        head["responses"][status] = answer
    return head
