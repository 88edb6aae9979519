"""300 slow connections (headers never finished, bodies never finished, idle keep-alives)
against a worker that may open 256 descriptors: scans are still answered at once, the slow
connections are closed by their timeouts or to make room, and ``/metrics`` counts them."""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ingest.ops.local_services import free_port
from ingest.ops.server import RESERVED_DESCRIPTORS, connection_cap, wait_until_serving
from tests.conftest import serve_environment
from tests.helpers import ADMIN, ORDER

DESCRIPTORS = 256
TIMEOUT_S = 4
"""The header, body and idle timeouts of the server under test."""
SLOW_EACH = 100  # of each kind: 300 in all, more than the worker may hold
SCANS = 20


@pytest.fixture
def server(redis_url: str, keyring_path: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`scanward serve` with short timeouts and 256 descriptors; its URL and its log."""
    port = free_port()
    env = {
        **serve_environment(redis_url, keyring_path, tmp_path, port),
        "SCANWARD_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "SCANWARD_BODY_TIMEOUT_S": str(TIMEOUT_S),
        "SCANWARD_IDLE_TIMEOUT_S": str(TIMEOUT_S),
    }

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))

    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "serve"],
            env=env,
            stderr=stderr,
            preexec_fn=few_descriptors,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_serving(url, 30), log.read_text()
        yield url, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.redis
@pytest.mark.slow
async def test_slow_connections_are_closed_and_scans_answered(server: tuple[str, Path]) -> None:
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    code = await _a_code(url)
    started = time.monotonic()
    slow = []
    for _ in range(SLOW_EACH):  # in turn, so that some of each kind outlive the cap's closes
        slow += [await _slow_headers(port), await _slow_body(port), await _idle_keep_alive(port)]

    latencies = await _scan_each_on_a_new_connection(url, code)
    assert time.monotonic() - started < TIMEOUT_S, (
        "too slow to show anything: no slow one timed out yet"
    )
    assert max(latencies) < 1.0, latencies

    # ends only once the server has closed every slow connection
    await asyncio.wait_for(asyncio.gather(*(reader.read(-1) for reader, _ in slow)), TIMEOUT_S + 5)
    for _, writer in slow:
        writer.close()

    closed = await _closed_by_reason(url)
    assert sum(closed.values()) >= 3 * SLOW_EACH, closed
    assert closed["over_capacity"] >= 3 * SLOW_EACH - DESCRIPTORS, closed
    assert min(closed[r] for r in ("header_timeout", "body_timeout", "idle")) > 0, closed
    lines = [line for line in log.read_text().splitlines() if "connections closed" in line]
    assert 1 <= len(lines) <= 3, lines  # counted, not a line per connection
    assert "Traceback" not in log.read_text()


def test_the_cap_fits_the_descriptor_limit(caplog: pytest.LogCaptureFixture) -> None:
    """Asked for more connections than the hard limit allows, a worker raises its soft limit to
    the hard one and takes what that leaves beside the reserve, with a warning."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on descriptors here")
    assert connection_cap(10) == 10
    assert connection_cap(hard) == hard - RESERVED_DESCRIPTORS
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    assert "descriptor limit" in caplog.text


async def _a_code(url: str) -> str:
    async with aiohttp.ClientSession(headers=ADMIN) as session:
        async with session.post(url + "/v1/batches", json=ORDER) as reply:
            assert reply.status == 201, await reply.text()
            batch_id = (await reply.json())["batch_id"]
        async with session.get(f"{url}/v1/batches/{batch_id}/codes?limit=1") as reply:
            assert reply.status == 200
            return (await reply.text()).split()[0]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _slow_headers(port: int) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return reader, writer


async def _slow_body(port: int) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"code": '
    )
    return reader, writer


async def _idle_keep_alive(port: int) -> Connection:
    """A connection that asked one question, got its answer and stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    [length] = re.findall(rb"Content-Length: (\d+)", head)
    await reader.readexactly(int(length))
    return reader, writer


async def _scan_each_on_a_new_connection(url: str, code: str) -> list[float]:
    latencies = []
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for number in range(SCANS):
            began = time.monotonic()
            body = {"code": code, "device_id": f"phone-{number}"}
            async with session.post(url + "/v1/scans", json=body) as reply:
                assert reply.status == 200, await reply.text()
            latencies.append(time.monotonic() - began)
    return latencies


async def _closed_by_reason(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as reply:
        text = await reply.text()
    found = re.findall(r'scanward_connections_closed_total\{reason="(\w+)"\} (\S+)', text)
    closed = {reason: float(value) for reason, value in found}
    return {
        r: closed.get(r, 0.0) for r in ("header_timeout", "body_timeout", "idle", "over_capacity")
    }
