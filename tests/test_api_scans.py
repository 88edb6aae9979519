"""POST /v1/scans and /v1/scans/bulk against a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from codes import digital_link
from codes.keyring import Keyring
from codes.verify import Verifier
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.events.scans import EVENT_FIELD
from ingest.http.app import create_app
from tests.conftest import KEYRING_SECRET
from tests.helpers import ADMIN, AiohttpClient, batch_codes, order_shipped_batch, post_scan

pytestmark = pytest.mark.redis

SHANGHAI = {"lat": 31.2304, "lon": 121.4737}


def _events(redis_url: str) -> int:
    """Events appended to the streams (and not yet sunk: no sink runs here)."""
    with redis.Redis.from_url(redis_url) as client:
        return sum(int(client.get(key) or 0) for key in Partitions().unsunk_keys)


def _keys(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return sorted(client.keys("{scans:*"))


async def _scan(client: TestClient[Any, Any], **body: object) -> dict[str, Any]:
    return await post_scan(client, {**SHANGHAI, **body})


async def test_first_and_repeat_scans_of_a_genuine_code(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    first = await _scan(client, code=code, device_id="phone-1", member_id="m1")
    assert first["verdict"] == "genuine"
    assert first["genuine"] is True
    assert first["first_scan"] is True
    assert first["scan_count"] == 1
    assert first["flags"] == []
    assert first["product"]["sku"] == "BEER-500"
    assert first["product"]["batch_id"] == batch["batch_id"]
    again = await _scan(client, code=code.lower(), device_id="phone-2")
    assert (again["first_scan"], again["scan_count"], again["distinct_devices"]) == (False, 2, 2)
    assert again["scan_id"] != first["scan_id"]
    assert _events(redis_url) == 2


async def test_digital_link_urls_are_scanned_like_codes(client: TestClient[Any, Any]) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    url = digital_link.build("https://id.example.com", batch["gtin"], code)
    answer = await _scan(client, code=url)
    assert answer["verdict"] == "genuine"
    assert answer["product"]["code"] == code


async def test_counterfeits_are_answered_with_the_reason(
    client: TestClient[Any, Any], settings: Settings, redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    keyring = Keyring.load(settings.keyring_file, KEYRING_SECRET)
    outside = keyring.signer(batch["key_id"], batch["batch_id"]).sign(batch["last_serial"] + 1)
    forged_tag = code[:-1] + ("0" if code[-1] != "0" else "1")
    cases = {
        "not a code at all": "malformed",
        forged_tag: "bad_signature",
        str(outside): "unknown_serial",
        "Z" + code[1:]: "unknown_key",
        digital_link.build("https://x.example", "4006381333948", code): "gtin_mismatch",
    }
    for scanned, reason in cases.items():
        answer = await _scan(client, code=scanned)
        assert answer["verdict"] == "counterfeit", scanned
        assert answer["genuine"] is False
        assert [f["flag"] for f in answer["flags"]] == [reason]
        assert answer["product"] is None
        assert (answer["first_scan"], answer["scan_count"]) == (False, 0)
    genuine = await _scan(client, code=code)
    assert genuine["first_scan"] is True  # the forgery did not touch the real code's state
    assert _events(redis_url) == len(cases) + 1


async def test_codes_of_a_revoked_batch(client: TestClient[Any, Any]) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    revoked = await client.post(f"/v1/batches/{batch['batch_id']}/revoke", headers=ADMIN)
    assert revoked.status == 200
    answer = await _scan(client, code=code)
    assert answer["verdict"] == "revoked"
    assert [f["flag"] for f in answer["flags"]] == ["revoked"]


async def test_a_retried_scan_id_gets_the_same_answer_and_one_event(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    first = await _scan(client, code=code, scan_id="retry-me", device_id="d1")
    retries = await asyncio.gather(
        *(_scan(client, code=code, scan_id="retry-me", device_id="d1") for _ in range(5))
    )
    assert all(r == first for r in retries)
    fake = await _scan(client, code="nonsense", scan_id="fake-1")
    assert await _scan(client, code="nonsense", scan_id="fake-1") == fake
    assert _events(redis_url) == 2


async def test_concurrent_scans_of_one_code_count_once_each(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    answers = await asyncio.gather(
        *(_scan(client, code=code, device_id=f"device-{i}") for i in range(200))
    )
    assert sum(a["first_scan"] for a in answers) == 1
    assert sorted(a["scan_count"] for a in answers) == list(range(1, 201))
    assert sorted(a["distinct_devices"] for a in answers) == [1, 2, 3, 4] + [5] * 196
    assert len({a["scan_id"] for a in answers}) == 200
    assert _events(redis_url) == 200


BAD_BODIES: list[tuple[object, int, str]] = [
    ({}, 422, "code is required"),
    ({"code": ""}, 422, "code must not be empty"),
    ({"code": 5}, 422, "code must be a string"),
    ({"code": "X" * 600}, 422, "at most 512"),
    ({"code": "ABC", "lat": 91, "lon": 0}, 422, "lat must be between -90 and 90"),
    ({"code": "ABC", "lat": 0, "lon": -180.5}, 422, "lon must be between -180 and 180"),
    ({"code": "ABC", "lat": 10}, 422, "lat and lon go together"),
    ({"code": "ABC", "lat": "north", "lon": 1}, 422, "lat must be a number"),
    ({"code": "ABC", "lat": True, "lon": 1}, 422, "lat must be a number"),
    ({"code": "ABC", "accuracy_m": -1}, 422, "accuracy_m must be between"),
    ({"code": "ABC", "device_id": "d" * 65}, 422, "device_id must be at most 64"),
    ({"code": "ABC", "member_id": "a\tb"}, 422, "printable"),
    ({"code": "ABC", "scan_id": ["x"]}, 422, "scan_id must be a string"),
    ({"code": "ABC", "client_ts": "yesterday"}, 422, "client_ts must be an ISO-8601"),
    ({"code": "ABC", "client_ts": "2027-06-01T12:00:00"}, 422, "time zone"),
    ({"code": "ABC", "client_ts": "1970-01-01T00:00:00Z"}, 422, "between the years"),
    ({"code": "ABC", "colour": "red"}, 422, "unknown field(s): colour"),
    ([1, 2], 400, "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
async def test_bad_scans_are_4xx_and_leave_no_trace(
    client: TestClient[Any, Any], redis_url: str, body: object, status: int, message: str
) -> None:
    reply = await client.post("/v1/scans", data=orjson.dumps(body), headers=_JSON)
    assert reply.status == status
    error = (await reply.json())["error"]
    assert message in error["message"]
    assert _keys(redis_url) == []


_JSON = {"Content-Type": "application/json"}


async def test_broken_bodies_are_4xx(client: TestClient[Any, Any], redis_url: str) -> None:
    not_json = await client.post("/v1/scans", data=b"{nope", headers=_JSON)
    assert (not_json.status, (await not_json.json())["error"]["code"]) == (400, "invalid_json")
    huge = await client.post("/v1/scans", data=b" " * 70_000, headers=_JSON)
    assert huge.status == 413
    form = await client.post("/v1/scans", data={"code": "x"})
    assert form.status == 415
    assert _keys(redis_url) == []


async def test_bulk_answers_every_line_in_order(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    codes = await batch_codes(client, batch["batch_id"], limit=3)
    lines = [
        orjson.dumps({"code": codes[0], **SHANGHAI}),
        b"{broken",
        orjson.dumps({"code": codes[1], "lat": 100, "lon": 0}),
        b"",
        orjson.dumps({"code": "fake"}),
        orjson.dumps({"code": codes[0], "scan_id": "s-2"}),
        orjson.dumps(["not", "an", "object"]),
        orjson.dumps({"code": codes[2]}),
    ]
    reply = await client.post(
        "/v1/scans/bulk",
        data=b"\n".join(lines) + b"\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert reply.status == 200
    assert reply.content_type == "application/x-ndjson"
    out = [orjson.loads(line) for line in (await reply.read()).splitlines()]
    assert len(out) == 7
    assert out[0]["verdict"] == "genuine"
    assert out[0]["first_scan"] is True
    assert (out[1]["line"], out[1]["error"]["code"]) == (2, "invalid_json")
    assert (out[2]["line"], out[2]["error"]["code"]) == (3, "validation_failed")
    assert out[3]["verdict"] == "counterfeit"
    assert (out[4]["scan_count"], out[4]["scan_id"]) == (2, "s-2")
    assert (out[5]["line"], out[5]["error"]["code"]) == (7, "invalid_json")
    assert out[6]["first_scan"] is True
    assert _events(redis_url) == 4


async def test_bulk_refuses_other_content_and_oversized_bodies(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    form = await client.post("/v1/scans/bulk", data={"code": "x"})
    assert form.status == 415
    huge = await client.post(
        "/v1/scans/bulk", data=b"{}\n" * 3_000_000, headers={"Content-Type": "application/x-ndjson"}
    )
    assert huge.status == 413
    assert _keys(redis_url) == []


async def test_a_full_backlog_answers_503_and_changes_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str
) -> None:
    small = dataclasses.replace(settings, max_unsunk_events=16)  # one event per partition
    client = await aiohttp_client(create_app(small))
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    assert (await _scan(client, code=code))["first_scan"] is True
    reply = await client.post("/v1/scans", json={"code": code})
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "2"
    assert (await reply.json())["error"]["code"] == "backlog_full"
    assert _events(redis_url) == 1
    health = await (await client.get("/healthz", headers=ADMIN)).json()
    assert (health["status"], health["full_partitions"]) == ("degraded", 1)
    with redis.Redis.from_url(redis_url) as raw:
        for key in Partitions().stream_keys:
            raw.delete(key)  # as if the sink had trimmed the stream: the count is then ignored
    again = await _scan(client, code=code)
    assert (again["first_scan"], again["scan_count"]) == (False, 2)


async def test_forwarded_addresses_are_trusted_only_from_configured_proxies(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
    for trusted, expected in (((), "127.0.0.1"), (("127.0.0.0/8",), "203.0.113.9")):
        client = await aiohttp_client(
            create_app(dataclasses.replace(settings, trusted_proxies=trusted))
        )
        reply = await client.post("/v1/scans", json={"code": "x"}, headers=forwarded)
        assert reply.status == 200
        with redis.Redis.from_url(redis_url) as raw:
            entries = [e for key in Partitions().stream_keys for _, e in raw.xrange(key)]
            raw.flushall()
        [entry] = entries
        assert expected.encode() in entry[EVENT_FIELD]


async def test_long_non_ascii_scan_ids_work_as_retry_keys(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    scan_id = "扫码" * 32  # 64 characters, 192 bytes
    first = await _scan(client, code="nonsense", scan_id=scan_id)
    assert first["scan_id"] == scan_id
    assert await _scan(client, code="nonsense", scan_id=scan_id) == first
    assert _events(redis_url) == 1


async def test_a_scan_id_reused_for_another_code_or_phone_is_another_scan(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = await order_shipped_batch(client)
    first_code, second_code = await batch_codes(client, batch["batch_id"], limit=2)
    a = await _scan(client, code=first_code, scan_id="1", device_id="phone-a")
    b = await _scan(client, code=second_code, scan_id="1", device_id="phone-a")
    c = await _scan(client, code=first_code, scan_id="1", device_id="phone-b")
    assert (a["first_scan"], b["first_scan"], c["first_scan"]) == (True, True, False)
    assert (b["product"]["code"], c["scan_count"]) == (second_code, 2)
    assert _events(redis_url) == 3
    again = await _scan(client, code=second_code.lower(), scan_id="1", device_id="phone-a")
    assert again == b  # the same scan retried, however the code was typed


async def test_bulk_past_the_backlog_bound_is_a_503_when_nothing_was_taken(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, max_unsunk_events=16)))
    ndjson = {"Content-Type": "application/x-ndjson"}
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    assert (await _scan(client, code=code))["first_scan"] is True  # its partition is now full
    full = await client.post("/v1/scans/bulk", data=orjson.dumps({"code": code}), headers=ndjson)
    assert (full.status, full.headers["Retry-After"]) == (503, "2")
    assert (await full.json())["error"]["code"] == "backlog_full"
    lines = b"\n".join(orjson.dumps({"code": c}) for c in (code, "elsewhere-1", "elsewhere-2"))
    mixed = await client.post("/v1/scans/bulk", data=lines, headers=ndjson)
    assert (mixed.status, mixed.headers["Retry-After"]) == (200, "2")
    out = [orjson.loads(line) for line in (await mixed.read()).splitlines()]
    assert out[0]["error"]["code"] == "backlog_full"
    assert _events(redis_url) == 1 + sum("verdict" in line for line in out)


async def test_a_scan_that_breaks_a_step_fails_alone(
    client: TestClient[Any, Any], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify = Verifier.verify

    def breaks_on_boom(self: Verifier, scanned: str) -> Any:
        if scanned == "boom":
            raise RuntimeError("a bug in verification")
        return verify(self, scanned)

    monkeypatch.setattr(Verifier, "verify", breaks_on_boom)
    lines = b"\n".join(orjson.dumps({"code": c}) for c in ("fake-1", "boom", "fake-2"))
    reply = await client.post(
        "/v1/scans/bulk", data=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    out = [orjson.loads(line) for line in (await reply.read()).splitlines()]
    assert [line.get("verdict") for line in out] == ["counterfeit", None, "counterfeit"]
    assert out[1] == {"line": 2, "error": {"code": "internal", "message": "internal error"}}
    assert _events(redis_url) == 2


@pytest.mark.clickhouse
async def test_health_and_metrics_show_each_partitions_backlog_and_its_sink(
    app_client: TestClient[Any, Any], redis_url: str
) -> None:
    partitions = Partitions()
    with redis.Redis.from_url(redis_url) as raw:
        raw.incrby(partitions.unsunk_key(3), 7)  # as if 7 events waited there

        def holders() -> set[bytes | None]:
            return {raw.get(partitions.stream_key(p) + ":lease") for p in range(16)}

        for _ in range(100):  # the sink of sunk_settings takes its leases as it starts
            if None not in holders():
                break
            await asyncio.sleep(0.1)
        [holder] = holders()
    assert holder is not None
    health = await (await app_client.get("/healthz", headers=ADMIN)).json()
    assert [p["partition"] for p in health["partitions"]] == list(range(16))
    assert health["partitions"][3] == {"partition": 3, "unsunk_events": 7, "sink": holder.decode()}
    assert {p["sink"] for p in health["partitions"]} == {holder.decode()}
    metrics = await (await app_client.get("/metrics", headers=ADMIN)).text()
    assert 'scanward_partition_unsunk_events{partition="3"} 7.0' in metrics
    assert f'scanward_partition_sink{{partition="3",sink="{holder.decode()}"}} 1.0' in metrics
