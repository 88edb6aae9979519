from __future__ import annotations

import asyncio
import itertools
import os
import resource
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient

from codes.batch_index import BatchIndex
from codes.batches import Batch
from codes.keyring import Keyring
from codes.verify import Verifier
from ingest.config import Settings
from ingest.http.state import REDIS
from tests.conftest import KEYRING_SECRET
from tests.helpers import ADMIN, ORDER, order_batch

pytestmark = pytest.mark.redis


async def _line_token(client: TestClient[Any, Any]) -> dict[str, str]:
    reply = await client.post("/v1/tokens", json={"role": "line", "name": "line 1"}, headers=ADMIN)
    assert reply.status == 201
    return {"Authorization": f"Bearer {(await reply.json())['token']}"}


def _verifier(settings: Settings, *batches: dict[str, Any]) -> Verifier:
    keyring = Keyring.load(settings.keyring_file, KEYRING_SECRET)
    records = [Batch.from_redis({k: str(v) for k, v in b.items()}) for b in batches]
    return Verifier(keyring, BatchIndex(records))


async def test_order_show_and_revoke_a_batch(client: TestClient[Any, Any]) -> None:
    line = await _line_token(client)
    reply = await client.post("/v1/batches", json=ORDER, headers=line)
    assert reply.status == 201
    batch = await reply.json()
    assert batch["quantity"] == 1000
    assert batch["gtin"] == "04006381333931"
    assert batch["first_serial"] >= 1
    assert batch["codes_url"] == f"/v1/batches/{batch['batch_id']}/codes"
    assert reply.headers["Location"] == f"/v1/batches/{batch['batch_id']}"

    shown = await client.get(f"/v1/batches/{batch['batch_id']}", headers=line)
    assert (await shown.json())["status"] == "active"

    forbidden = await client.post(f"/v1/batches/{batch['batch_id']}/revoke", headers=line)
    assert forbidden.status == 403
    for _ in range(2):  # revoking twice is harmless
        revoked = await client.post(f"/v1/batches/{batch['batch_id']}/revoke", headers=ADMIN)
        assert (await revoked.json())["status"] == "revoked"
    download = await client.get(f"/v1/batches/{batch['batch_id']}/codes", headers=line)
    assert download.status == 409
    assert (await download.json())["error"]["code"] == "batch_revoked"


async def test_concurrent_orders_never_overlap(client: TestClient[Any, Any]) -> None:
    batches = await asyncio.gather(*(order_batch(client, quantity=100 + i) for i in range(20)))
    ranges = sorted((b["first_serial"], b["last_serial"]) for b in batches)
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1


async def test_download_formats_and_slices(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    batch = await order_batch(client)
    url = f"/v1/batches/{batch['batch_id']}/codes"
    txt = await client.get(url, headers=ADMIN)
    assert txt.content_length == 21_000
    codes = (await txt.text()).split()
    verifier = _verifier(settings, batch)
    assert [verifier.verify(c).serial for c in codes] == list(
        range(batch["first_serial"], batch["last_serial"] + 1)
    )
    sliced = await client.get(url, params={"offset": "10", "limit": "5"}, headers=ADMIN)
    assert (await sliced.text()).split() == codes[10:15]
    tail = await client.get(url, params={"offset": "998", "limit": "50"}, headers=ADMIN)
    assert (await tail.text()).split() == codes[998:]

    links = (await (await client.get(url, params={"format": "url"}, headers=ADMIN)).text()).split()
    assert links[0] == f"https://id.example.com/01/04006381333931/21/{codes[0]}"
    csv = await client.get(url, params={"format": "csv", "limit": "2"}, headers=ADMIN)
    assert csv.content_type == "text/csv"
    assert (await csv.text()).splitlines() == [
        "serial,code,url",
        f"{batch['first_serial']},{codes[0]},{links[0]}",
        f"{batch['first_serial'] + 1},{codes[1]},{links[1]}",
    ]


async def test_code_lookup_changes_nothing(client: TestClient[Any, Any]) -> None:
    batch = await order_batch(client)
    first = (await (await client.get(batch["codes_url"], headers=ADMIN)).text()).split()[0]
    reply = await client.get(f"/v1/codes/{first.lower()}")
    info = await reply.json()
    assert info["valid"] is True
    assert info["code"] == first
    assert info["batch_id"] == batch["batch_id"]
    assert info["status"] == "active"
    last = "0" if first[-1] != "0" else "1"
    forged = await (await client.get(f"/v1/codes/{first[:-1]}{last}")).json()
    assert forged == {"valid": False, "reason": "bad_signature", "message": forged["message"]}
    await client.post(f"/v1/batches/{batch['batch_id']}/revoke", headers=ADMIN)
    assert (await (await client.get(f"/v1/codes/{first}")).json())["status"] == "revoked"


async def test_health_without_clickhouse(client: TestClient[Any, Any]) -> None:
    reply = await client.get("/healthz", headers=ADMIN)
    assert await reply.json() == {
        "status": "ok",
        "pid": os.getpid(),
        "redis": "ok",
        "clickhouse": "not configured",
        "unsunk_events": 0,
        "unsunk_draws": 0,
        "unsunk_changes": 0,
        "full_partitions": 0,
        "sink": {},
        "partitions": [{"partition": p, "unsunk_events": 0, "sink": None} for p in range(16)],
    }


def _serials_of(text_lines: bytes, verifier: Verifier) -> list[int]:
    return [verifier.verify(code).serial for code in text_lines.decode().split()]


@pytest.mark.slow
async def test_million_code_download_is_distinct_valid_and_flat_in_memory(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    small = await order_batch(client, quantity=10_000)
    big = await order_batch(client, quantity=1_000_000)
    verifier = _verifier(settings, small, big)

    async def download(batch: dict[str, Any], fmt: str) -> tuple[int, int]:
        """Bytes received and peak RSS growth (KiB) while streaming, keeping nothing."""
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reply = await client.get(batch["codes_url"], params={"format": fmt}, headers=ADMIN)
        received = 0
        async for chunk in reply.content.iter_chunked(1 << 16):
            received += len(chunk)
        return received, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before

    await download(small, "url")  # warm-up: buffers and caches reach their working size
    received, growth_kib = await download(big, "url")
    assert received == 1_000_000 * (len("https://id.example.com/01/04006381333931/21/") + 21)
    # The whole body is 66 MB; a server that held it would grow by far more than this.
    assert growth_kib < 30_000

    reply = await client.get(big["codes_url"], headers=ADMIN)
    serials = np.empty(1_000_000, dtype=np.uint64)
    filled, pending = 0, b""
    async for chunk in reply.content.iter_chunked(1 << 16):
        pending += chunk
        whole = pending.rfind(b"\n") + 1
        batch_serials = _serials_of(pending[:whole], verifier)
        serials[filled : filled + len(batch_serials)] = batch_serials
        filled, pending = filled + len(batch_serials), pending[whole:]
    assert filled == 1_000_000
    assert len(np.unique(serials)) == 1_000_000


BAD_ORDERS: list[tuple[object, int, str]] = [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    ({"gtin": "4006381333931", "quantity": 5}, 422, "validation_failed"),
    ({**ORDER, "quantity": "5"}, 422, "validation_failed"),
    ({**ORDER, "quantity": True}, 422, "validation_failed"),
    ({**ORDER, "quantity": 0}, 422, "validation_failed"),
    ({**ORDER, "quantity": -3}, 422, "validation_failed"),
    ({**ORDER, "quantity": 10**30}, 422, "validation_failed"),
    ({**ORDER, "quantity": 2_000_001}, 422, "validation_failed"),
    ({**ORDER, "gtin": "4006381333932"}, 422, "validation_failed"),
    ({**ORDER, "gtin": 4006381333931}, 422, "validation_failed"),
    ({**ORDER, "kind": "crate"}, 422, "validation_failed"),
    ({**ORDER, "sku": "x" * 10_000}, 422, "validation_failed"),
    ({**ORDER, "quantiy": 5}, 422, "validation_failed"),
    (b"{" + b'"sku": "' + b"x" * 70_000 + b'"}', 413, "payload_too_large"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_ORDERS)
async def test_bad_orders_get_a_clear_error_and_write_nothing(
    client: TestClient[Any, Any], body: object, status: int, code: str
) -> None:
    if isinstance(body, bytes):
        reply = await client.post(
            "/v1/batches", data=body, headers={**ADMIN, "Content-Type": "application/json"}
        )
    else:
        reply = await client.post("/v1/batches", json=body, headers=ADMIN)
    assert reply.status == status
    error = (await reply.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert await client.app[REDIS].keys("{codes}*") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches/B1"),
        ("POST", "/v1/batches/B1/revoke"),
        ("GET", "/v1/batches/B1/codes"),
        ("POST", "/v1/tokens"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
async def test_bad_tokens_are_refused(
    client: TestClient[Any, Any], method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    reply = await client.request(method, path, json=ORDER, headers=headers)
    assert reply.status == 401
    assert (await reply.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"format": "pdf"}, "validation_failed"),
        ({"offset": "-1"}, "validation_failed"),
        ({"offset": "1001"}, "validation_failed"),
        ({"limit": "ten"}, "validation_failed"),
        ({"offset": "9" * 40}, "validation_failed"),
    ],
)
async def test_bad_download_queries(
    client: TestClient[Any, Any], query: dict[str, str], code: str
) -> None:
    batch = await order_batch(client)
    reply = await client.get(batch["codes_url"], params=query, headers=ADMIN)
    assert reply.status == 422
    assert (await reply.json())["error"]["code"] == code


async def test_unknown_things_are_json_404s(client: TestClient[Any, Any]) -> None:
    for path in ("/v1/batches/BNOPE", "/v1/batches/BNOPE/codes", "/nowhere"):
        reply = await client.get(path, headers=ADMIN)
        assert reply.status == 404
        assert (await reply.json())["error"]["code"]
    reply = await client.post("/v1/batches/BNOPE/revoke", headers=ADMIN)
    assert reply.status == 404


async def test_line_tokens_cannot_issue_tokens(client: TestClient[Any, Any]) -> None:
    line = await _line_token(client)
    reply = await client.post("/v1/tokens", json={"role": "admin", "name": "x"}, headers=line)
    assert reply.status == 403
    bad_role = await client.post("/v1/tokens", json={"role": "root", "name": "x"}, headers=ADMIN)
    assert bad_role.status == 422


@pytest.mark.parametrize("text", ["x", "0" * 20, "Z" * 300, "%F0%9F%8D%BA" * 5, "a-b c"])
async def test_code_lookup_of_garbage_is_an_answer(client: TestClient[Any, Any], text: str) -> None:
    reply = await client.get(f"/v1/codes/{text}")
    assert reply.status == 200
    assert (await reply.json())["valid"] is False


async def test_a_body_arriving_in_pieces_is_read_whole(client: TestClient[Any, Any]) -> None:
    body = orjson.dumps(ORDER)

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:10]
        await asyncio.sleep(0.05)
        yield body[10:]

    headers = {**ADMIN, "Content-Type": "application/json"}
    reply = await client.post("/v1/batches", data=slowly(), headers=headers)
    assert reply.status == 201, await reply.text()


async def test_an_undecodable_body_is_a_400(client: TestClient[Any, Any]) -> None:
    headers = {**ADMIN, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    reply = await client.post("/v1/batches", data=b"not gzip at all", headers=headers)
    assert reply.status == 400
    assert (await reply.json())["error"]["code"] == "unreadable_body"


async def test_head_of_a_download_sends_headers_only(client: TestClient[Any, Any]) -> None:
    batch = await order_batch(client)
    head = await client.head(batch["codes_url"], headers=ADMIN)
    assert head.status == 200
    assert head.headers["Content-Length"] == "21000"
    assert await head.read() == b""
    after = await client.get(batch["codes_url"], headers=ADMIN)  # the connection is still sane
    assert len(await after.read()) == 21_000


async def test_wrong_method_keeps_allow(client: TestClient[Any, Any]) -> None:
    reply = await client.delete("/v1/batches", headers=ADMIN)
    assert reply.status == 405
    assert "POST" in reply.headers["Allow"]
    assert (await reply.json())["error"]["code"] == "method_not_allowed"


async def test_text_fields_must_be_printable(client: TestClient[Any, Any]) -> None:
    reply = await client.post(
        "/v1/tokens", json={"role": "line", "name": "a\u0000b"}, headers=ADMIN
    )
    assert reply.status == 422


async def test_wrong_method_on_a_scan_endpoint_is_a_json_405(client: TestClient[Any, Any]) -> None:
    reply = await client.get("/v1/scans/bulk")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert (await reply.json())["error"]["code"] == "method_not_allowed"
