"""Hostile request bodies: deep nesting, duplicate keys, huge and self-crossing territories.

Each answers a JSON 4xx naming what is wrong, never a 500, and stores nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud.distributors import Distributor
from fraud.errors import TerritoryError
from fraud.territory import MAX_EDGE_PAIRS, MAX_POLYGONS, MAX_TOTAL_VERTICES, Territory
from ingest.errors import BadRequest
from ingest.http.request_body import MAX_JSON_DEPTH, parse_json
from rewards.campaigns import Campaign
from rewards.errors import CampaignError
from tests.helpers import ADMIN, CHINA
from tests.test_api_campaigns import prize

Client = TestClient[Any, Any]

NDJSON = {"Content-Type": "application/x-ndjson"}
TOO_DEEP = 1000  # orjson accepts up to 1024 levels; Python's own walks stop near 1000


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def campaign(**changes: object) -> dict[str, object]:
    return {
        "name": "Summer",
        "start": "2027-06-01T00:00:00+08:00",
        "end": "2027-06-10T00:00:00+08:00",
        "timezone": "Asia/Shanghai",
        "skus": ["BEER-500"],
        "prizes": [prize()],
        **changes,
    }


def circle(n: int, lon0: float = 0.0, lat0: float = 0.0, radius: float = 1.0) -> list[list[float]]:
    """A closed ring of n positions round a centre."""
    ring = [
        [
            lon0 + radius * math.cos(2 * math.pi * i / (n - 1)),
            lat0 + radius * math.sin(2 * math.pi * i / (n - 1)),
        ]
        for i in range(n - 1)
    ]
    return [*ring, ring[0]]


def polygon(*rings: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


# Lopsided: its signed area is not 0 (a symmetric bow-tie is refused for that already).
BOW_TIE: list[list[float]] = [[0, 0], [3, 3], [3, 0], [0, 2], [0, 0]]
SQUARE: list[list[float]] = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]


# --- nesting depth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "territory",
    [
        {"type": "Polygon", "coordinates": nested(TOO_DEEP)},
        {"type": "Polygon", "coordinates": [[[[0, 0]]]], "bbox": nested(TOO_DEEP)},
        {"type": nested(TOO_DEEP)},
    ],
)
def test_a_deep_territory_is_a_territory_error(territory: object) -> None:
    with pytest.raises(TerritoryError):
        Territory.from_geojson(territory)


@pytest.mark.parametrize("field", ["min_tier", "tier_weights", "kind", "value"])
def test_a_deep_prize_field_is_a_campaign_error(field: str) -> None:
    with pytest.raises(CampaignError):
        Campaign.from_json("c", campaign(prizes=[prize(**{field: nested(TOO_DEEP)})]), 5)


def test_parse_json_bounds_the_depth_and_names_where() -> None:
    parse_json(orjson.dumps({"a": nested(MAX_JSON_DEPTH - 1)}), "body")
    with pytest.raises(BadRequest) as caught:
        parse_json(orjson.dumps({"a": [1, {"b": nested(MAX_JSON_DEPTH)}]}), "body")
    assert caught.value.error_code == "too_deep"
    assert "body.a[1].b" in caught.value.message


def with_deep(document: dict[str, Any], *path: str | int) -> bytes:
    """``document`` as JSON text with the value at ``path`` nested ``TOO_DEEP`` deep (beyond
    what orjson and json write)."""
    marker = "DEEP-VALUE-HERE"
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = marker
    return orjson.dumps(document).replace(f'"{marker}"'.encode(), b"[" * TOO_DEEP + b"]" * TOO_DEEP)


@pytest.mark.redis
@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        (
            "PUT",
            "/v1/distributors/D1",
            with_deep({"name": "n", "territory": polygon()}, "territory", "coordinates"),
        ),
        ("PUT", "/v1/campaigns/c1", with_deep(campaign(), "prizes", 0, "min_tier")),
        ("POST", "/v1/scans", with_deep({"code": "x"}, "code")),
        ("POST", "/v1/tokens", with_deep({"role": "line", "name": "x"}, "name")),
    ],
)
async def test_deep_bodies_are_a_400_naming_the_field(
    client: Client, method: str, path: str, raw: bytes
) -> None:
    reply = await client.request(method, path, data=raw, headers=ADMIN)
    assert reply.status == 400, await reply.text()
    error = (await reply.json())["error"]
    assert error["code"] == "too_deep"
    assert str(MAX_JSON_DEPTH) in error["message"]
    if method == "PUT":
        assert (await client.get(path, headers=ADMIN)).status == 404


@pytest.mark.redis
async def test_a_deep_bulk_line_is_that_lines_error(client: Client) -> None:
    line = with_deep({"code": "x"}, "code")
    reply = await client.post("/v1/scans/bulk", data=line + b"\n", headers=NDJSON)
    assert reply.status == 200
    answer = orjson.loads(await reply.read())
    assert (answer["line"], answer["error"]["code"]) == (1, "too_deep")


# --- duplicate keys -----------------------------------------------------------------------

DUPLICATES = [
    b'{"code": "A", "code": "B"}',
    b'{"code": "A", "\\u0063ode": "B"}',  # the same key spelt with an escape
    b'{"code" : "A",\n "code"\t:"B"}',  # whitespace before the colon
    b'{"code": "A", "x": {"k": 1, "k": 2}}',  # nested
    b'{"code": "A", "x": [{"k": 1}, {"k": 2, "j": {"k": 1, "k": 1}}]}',
    b'{"a\\"b": 1, "a\\u0022b": 2}',  # an escaped quote in the key
]
NO_DUPLICATES = [
    b'{"code": "A"}',
    b'{"code": "A:\\"B\\": 1", "client_ts": "2027-06-01T12:00:00+08:00"}',
    b'{"code": "A", "x": {"code": 1}, "y": [{"code": 2}, {"code": 3}]}',
    b'{"a": "\\u003a", "b" : "x\\":", "\\u0063": ":"}',
    b'{"a\\\\": 1, "a": 2}',  # a key ending in a backslash is not "a"
    b"{}",
]


@pytest.mark.parametrize("raw", DUPLICATES)
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_json(raw, "body")
    assert caught.value.error_code == "duplicate_key"
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", NO_DUPLICATES)
def test_objects_without_duplicates_parse_as_before(raw: bytes) -> None:
    assert parse_json(raw, "body") == orjson.loads(raw)


_KEYS = st.sampled_from(["a", "b", "a:", 'a"', "\\", "c"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab:"\\{}, ', max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(_KEYS, inner), max_size=4).map(lambda pairs: _Pairs(pairs))
    ),
    max_leaves=12,
)


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, duplicates allowed."""


def _dump(value: Any, spaced: bool) -> str:
    """JSON text; with ``spaced``, spaces round each colon and every other key as escapes."""
    colon = " : " if spaced else ":"
    if isinstance(value, _Pairs):
        members = (
            f"{_key(k, spaced and i % 2 == 1)}{colon}{_dump(v, spaced)}"
            for i, (k, v) in enumerate(value)
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v, spaced) for v in value) + "]"
    return json.dumps(value)


def _key(key: str, escaped: bool) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" for c in key) + '"' if escaped else json.dumps(key)


def _has_duplicates(value: Any) -> bool:
    if isinstance(value, _Pairs):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(_has_duplicates(v) for _, v in value)
    if isinstance(value, list):
        return any(_has_duplicates(v) for v in value)
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEYS, _JSON), max_size=4).map(_Pairs), st.booleans())
def test_duplicates_are_found_exactly(document: _Pairs, spaced: bool) -> None:
    raw = _dump(document, spaced).encode()
    if _has_duplicates(document):
        with pytest.raises(BadRequest):
            parse_json(raw, "body")
    else:
        assert parse_json(raw, "body") == orjson.loads(raw)


@pytest.mark.redis
@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/v1/scans", b'{"code": "A", "code": "B"}'),
        ("POST", "/v1/tokens", b'{"role": "line", "name": "a", "role": "admin"}'),
        (
            "PUT",
            "/v1/distributors/D1",
            b'{"name": "n", "territory": {"type": "Point", "type": "Polygon", "coordinates": '
            + orjson.dumps(CHINA["coordinates"])
            + b"}}",
        ),
        (
            "PUT",
            "/v1/campaigns/c1",
            orjson.dumps(campaign())[:-1] + b', "name": "again"}',
        ),
    ],
)
async def test_duplicate_keys_are_a_400(client: Client, method: str, path: str, raw: bytes) -> None:
    reply = await client.request(method, path, data=raw, headers=ADMIN)
    assert reply.status == 400, await reply.text()
    assert (await reply.json())["error"]["code"] == "duplicate_key"
    if method == "PUT":
        assert (await client.get(path, headers=ADMIN)).status == 404


@pytest.mark.redis
async def test_a_bulk_line_with_duplicate_keys_is_that_lines_error(client: Client) -> None:
    reply = await client.post(
        "/v1/scans/bulk", data=b'{"code": "A", "code": "B"}\n', headers=NDJSON
    )
    answer = orjson.loads(await reply.read())
    assert (answer["line"], answer["error"]["code"]) == (1, "duplicate_key")


# --- territory size -----------------------------------------------------------------------


def test_a_territory_over_the_vertex_cap_is_refused_naming_it() -> None:
    per_ring = MAX_TOTAL_VERTICES // 4 + 1
    rings = [[circle(per_ring, lon0=10.0 * k)] for k in range(4)]
    with pytest.raises(TerritoryError, match=f"more than {MAX_TOTAL_VERTICES}"):
        Territory.from_geojson({"type": "MultiPolygon", "coordinates": rings})


def test_the_largest_territory_is_validated_quickly() -> None:
    """The cap keeps the worst accepted territory's validation short (it runs on the loop); a
    loose bound here, the measured figure is in docs/architecture.md."""
    per_ring = MAX_TOTAL_VERTICES // 4
    document = {
        "type": "MultiPolygon",
        "coordinates": [[circle(per_ring, lon0=10.0 * k)] for k in range(4)],
    }
    Territory.from_geojson(document)  # warm up
    started = time.thread_time()  # CPU time: other processes on the machine do not count
    Territory.from_geojson(document)
    assert time.thread_time() - started < 0.1


# --- self-crossing rings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rings", "where"),
    [
        ([BOW_TIE], "coordinates[0]"),
        ([SQUARE, [[1, 1], [5, 1], [5, 2], [1, 2], [1, 1]]], "coordinates[1]"),  # hole leaves
        ([SQUARE, [[0, 1], [1, 1], [1, 2], [0, 2], [0, 1]]], "coordinates[1]"),  # along the shell
        ([[[0, 0], [4, 0], [4, 4], [2, 0], [0, 4], [0, 0]]], "coordinates[0]"),  # touches itself
        ([[[0, 0], [4, 0], [4, 4], [4, 2], [4, 6], [0, 4], [0, 0]]], "coordinates[0]"),  # back
    ],
)
def test_crossing_rings_are_refused_naming_the_ring(rings: list[Any], where: str) -> None:
    with pytest.raises(TerritoryError, match=r"cross") as caught:
        Territory.from_geojson(polygon(*rings))
    assert f"territory.{where}" in str(caught.value)


@pytest.mark.parametrize(
    "rings",
    [
        [SQUARE],
        [SQUARE, [[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]],  # a hole inside
        [SQUARE, [[0, 0], [1, 1], [1, 2], [0, 0]]],  # a hole touching the shell at a vertex
        [[[0, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],  # a repeated position
        [circle(2000)],
    ],
)
def test_simple_rings_are_accepted(rings: list[Any]) -> None:
    Territory.from_geojson(polygon(*rings))


HOLE: list[list[float]] = [[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]


@pytest.mark.parametrize(
    ("rings", "where", "message"),
    [
        ([SQUARE, [[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]], "[1]", "outside"),
        ([[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]], SQUARE], "[1]", "outside"),  # round its shell
        ([SQUARE, HOLE, [[1.5, 1.5], [2.5, 1.5], [2.5, 2.5], [1.5, 1.5]]], "[2]", "inside another"),
        ([SQUARE, [[1.5, 1.5], [2.5, 1.5], [2.5, 2.5], [1.5, 1.5]], HOLE], "[1]", "inside another"),
        ([SQUARE, [[0, 2], [2, 0], [4, 2], [2, 4], [0, 2]]], "[1]", "one point"),  # at 4 corners
        ([SQUARE, [[0, 2], [2, 1], [4, 2], [2, 3], [0, 2]]], "[1]", "one point"),  # on 2 sides
        (  # two holes touching each other twice
            [SQUARE, [[1, 1], [3, 1], [2, 1.8], [1, 1]], [[1, 1], [2, 2], [3, 1], [2, 3], [1, 1]]],
            "[2]",
            "one point",
        ),
        (  # a loop of three touches: shell, hole, hole
            [SQUARE, [[0, 2], [2, 1], [2, 3], [0, 2]], [[2, 1], [4, 2], [3, 3], [2, 1]]],
            "[2]",
            "one point",
        ),
    ],
)
def test_holes_outside_inside_others_or_cutting_the_polygon_are_refused(
    rings: list[Any], where: str, message: str
) -> None:
    with pytest.raises(TerritoryError, match=message) as caught:
        Territory.from_geojson(polygon(*rings))
    assert f"territory.coordinates{where}:" in str(caught.value)
    multi = {"type": "MultiPolygon", "coordinates": [[circle(5, lon0=20)], rings]}
    with pytest.raises(TerritoryError, match=message) as caught:
        Territory.from_geojson(multi)
    assert f"territory.coordinates[1]{where}:" in str(caught.value)


@pytest.mark.parametrize(
    "rings",
    [
        [SQUARE, HOLE, [[3, 3], [3.5, 3], [3.5, 3.5], [3, 3]]],  # holes touching at a corner
        [SQUARE, [[0, 2], [1, 1.5], [1, 2.5], [0, 2]], [[1, 2.5], [3, 2], [3, 3], [1, 2.5]]],
        [SQUARE, [[4, 2], [2, 1], [2, 3], [4, 2]]],  # a corner on the shell's side
        [SQUARE, [[1, 1], [2, 1], [2, 2], [1, 1]], [[2, 2], [3, 2], [3, 3], [2, 2]]],
    ],
)
def test_holes_touching_at_single_points_are_accepted(rings: list[Any]) -> None:
    Territory.from_geojson(polygon(*rings))


def test_a_bow_tie_with_many_vertices_is_found() -> None:
    ring = circle(5000)
    ring[10], ring[2000] = ring[2000], ring[10]
    with pytest.raises(TerritoryError, match="cross"):
        Territory.from_geojson(polygon(ring))


def star(points: int) -> list[list[float]]:
    """A closed star of long spikes: every edge's extent overlaps hundreds of others'."""
    ring = [
        [
            (1 + 9 * (i % 2)) * math.cos(2 * math.pi * i / points),
            (1 + 9 * (i % 2)) * math.sin(2 * math.pi * i / points),
        ]
        for i in range(points)
    ]
    return [*ring, ring[0]]


@pytest.mark.parametrize("points", [800, MAX_TOTAL_VERTICES // 4])
def test_the_crossing_check_of_a_spiky_ring_is_bounded(points: int) -> None:
    """Accepted (800 spikes) or refused for its pairs of edges side by side (more), quickly."""
    started = time.thread_time()
    if points == 800:
        Territory.from_geojson(polygon(star(points)))
    else:
        with pytest.raises(TerritoryError, match=f"more than {MAX_EDGE_PAIRS}"):
            Territory.from_geojson(polygon(star(points)))
    assert time.thread_time() - started < 0.2


@pytest.mark.redis
async def test_a_bow_tie_territory_is_a_422(client: Client) -> None:
    body = {"name": "n", "territory": polygon(BOW_TIE)}
    reply = await client.put("/v1/distributors/D1", json=body, headers=ADMIN)
    assert reply.status == 422
    error = (await reply.json())["error"]
    assert error["code"] == "invalid_territory"
    assert "territory.coordinates[0]" in error["message"]
    assert (await client.get("/v1/distributors/D1", headers=ADMIN)).status == 404


def test_a_territory_saved_before_the_limits_still_loads() -> None:
    """Stored territories were checked when saved: one saved by an earlier version, over today's
    limits or crossing itself, must not stop the workers that load the reference data."""
    stored = {
        "distributor_id": "OLD",
        "name": "Saved long ago",
        "territory": {
            "type": "MultiPolygon",
            "coordinates": [
                [BOW_TIE],
                *([[circle(200)]] * (MAX_POLYGONS + 1)),
            ],
        },
        "updated_ms": 1,
    }
    loaded = Distributor.from_stored(orjson.dumps(stored))
    assert loaded.distributor_id == "OLD"
    with pytest.raises(TerritoryError):
        Territory.from_geojson(stored["territory"])


Point = list[float]


def _orientation(a: Point, b: Point, c: Point) -> int:
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (cross > 0) - (cross < 0)


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _simple(ring: list[Point]) -> bool:
    """Every pair of edges, the slow and obvious way: only consecutive edges may meet, at their
    shared position, and not by turning back along each other."""
    positions = [ring[0]] + [p for before, p in itertools.pairwise(ring) if p != before]
    edges = list(itertools.pairwise(positions))
    for (i, (a, b)), (j, (c, d)) in itertools.combinations(enumerate(edges), 2):
        o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
        o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
        if j == i + 1 or (i == 0 and j == len(edges) - 1):  # they share a position
            overlap_x = min(max(a[0], b[0]), max(c[0], d[0])) - max(
                min(a[0], b[0]), min(c[0], d[0])
            )
            overlap_y = min(max(a[1], b[1]), max(c[1], d[1])) - max(
                min(a[1], b[1]), min(c[1], d[1])
            )
            if o1 == o2 == 0 and (overlap_x > 0 or overlap_y > 0):
                return False
            continue
        if o1 * o2 < 0 and o3 * o4 < 0:
            return False
        ends_on = (o1 == 0 and _on_segment(c, a, b)) or (o2 == 0 and _on_segment(d, a, b))
        if ends_on or (o3 == 0 and _on_segment(a, c, d)) or (o4 == 0 and _on_segment(b, c, d)):
            return False
    return True


def test_the_crossing_check_agrees_with_testing_every_pair() -> None:
    rng = random.Random(18)
    compared = 0
    for _ in range(600):
        ring: list[Point] = [
            [rng.randrange(5), rng.randrange(5)] for _ in range(rng.randrange(3, 9))
        ]
        ring.append(ring[0])
        try:
            Territory.from_geojson(polygon(ring))
        except TerritoryError as error:
            if "cross" not in str(error):
                continue  # too few positions, or no area
            assert not _simple(ring), ring
        else:
            assert _simple(ring), ring
        compared += 1
    assert compared > 300
