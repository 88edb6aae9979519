"""The answers aiohttp itself gives (malformed requests, oversized headers and bodies) are JSON
errors that echo nothing a client sent, no response names the server's versions, and a client
that hangs up in the middle of a body costs one log line and no traceback."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import orjson
import pytest

from ingest.config import Settings
from ingest.ops.local_services import free_port
from ingest.ops.server import serving

pytestmark = pytest.mark.redis

MARKER = "zqx-echo-marker"
"""Put into every bad request: no answer may contain it."""


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    """The real server (the same runner `scanward serve` uses) on a free loopback port."""
    listening = replace(settings, port=free_port())
    async with serving(listening):
        yield listening.port


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        self.raw = raw

    def error(self) -> dict[str, str]:
        """The ``error`` object of a JSON error answer, checked for shape and echo."""
        assert self.headers["content-type"].startswith("application/json"), self.raw
        assert MARKER.encode() not in self.raw
        assert "aiohttp" not in self.headers.get("server", "").lower()
        assert "python" not in self.headers.get("server", "").lower()
        error: dict[str, str] = orjson.loads(self.body)["error"]
        assert set(error) == {"code", "message"}
        return error


async def exchange(port: int, request: bytes) -> Answer:
    """``request`` sent as raw bytes; the answer read until the server closes (every request here
    closes its connection), within 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()
    return Answer(raw)


@pytest.mark.parametrize(
    ("request_text", "status", "code"),
    [
        pytest.param(
            f"GET /{MARKER} HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "bad_request", id="line"
        ),
        pytest.param(
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad{MARKER} Header: 1\r\n\r\n",
            400,
            "bad_request",
            id="header",
        ),
        pytest.param(f"\x16\x03{MARKER} / HTTP/1.1\r\n\r\n", 400, "bad_request", id="tls"),
        pytest.param(
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {MARKER * 1000}\r\n\r\n",
            431,
            "request_header_fields_too_large",
            id="long-header",
        ),
        pytest.param(
            f"GET /{MARKER * 1000} HTTP/1.1\r\nHost: x\r\n\r\n",
            431,
            "request_header_fields_too_large",
            id="long-line",
        ),
    ],
)
async def test_what_aiohttp_cannot_parse_is_a_json_error(
    port: int, request_text: str, status: int, code: str
) -> None:
    answer = await exchange(port, request_text.encode())
    assert answer.status == status
    assert answer.error()["code"] == code


async def test_a_body_over_the_limit_is_a_json_413(port: int, settings: Settings) -> None:
    body = b"{" + MARKER.encode() * (settings.max_body_bytes // len(MARKER) + 1) + b"}"
    request = (
        b"POST /v1/scans HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = await exchange(port, request)
    assert answer.status == 413
    assert answer.error()["code"] == "payload_too_large"


async def test_a_compressed_body_that_grows_past_the_app_limit_is_a_json_413(
    port: int, settings: Settings
) -> None:
    """aiohttp's own 413 (``client_max_size``), raised while the body is inflated."""
    largest = max(settings.max_body_bytes, settings.max_bulk_bytes)
    body = gzip.compress(MARKER.encode() * (largest // len(MARKER) + 1))
    request = (
        b"POST /v1/scans HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = await exchange(port, request)
    assert answer.status == 413
    assert answer.error()["code"] == "payload_too_large"


async def test_an_unknown_expectation_is_a_json_417(port: int) -> None:
    request = (
        f"POST /v1/scans HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: {MARKER}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = await exchange(port, request.encode())
    assert answer.status == 417
    assert answer.error()["code"] == "expectation_failed"


async def test_expect_100_continue_is_still_honoured(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/scans HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Expect: 100-continue\r\nContent-Type: application/json\r\n"
            b"Content-Length: 16\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b'{"code": "fake"}')
        answer = Answer(await asyncio.wait_for(reader.read(-1), 5))
    finally:
        writer.close()
    assert answer.status == 200
    assert orjson.loads(answer.body)["verdict"] == "counterfeit"


async def test_answers_name_no_versions(port: int) -> None:
    answer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status in (200, 503)
    assert answer.headers["server"] == "scanward"


async def test_a_client_hanging_up_mid_body_logs_one_line_without_traceback(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/scans HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"code": '
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
    assert not [r for r in records if r.levelno >= logging.ERROR]
    assert len([r for r in records if "hangup 1" in r.getMessage()]) == 1, records
