"""300 slow connections (headers never finished, bodies never finished, idle keep-alives)
against a worker that may open 256 descriptors: scans are still answered at once, the slow
connections are closed by their timeouts or to make room, and ``/metrics`` counts them. A body
the app is slow to read is not the client's delay."""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ingest.http.transport import (
    ConnectionLimits,
    GuardedAppRunner,
    GuardedConnection,
    GuardedServer,
)
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


@pytest.fixture
def descriptor_limits() -> Iterator[tuple[int, int]]:
    """The process's descriptor limits (soft, hard), put back after the test."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield limits
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_cap_fits_the_descriptor_limit(
    descriptor_limits: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Asked for more connections than the soft limit allows, a worker raises it toward the hard
    one and takes what that leaves beside the reserve, with a warning if that is fewer."""
    soft, hard = descriptor_limits
    assert connection_cap(10) == 10
    if hard == resource.RLIM_INFINITY:  # the soft limit rises as far as asked
        wanted = 2 * soft if soft != resource.RLIM_INFINITY else 100_000
        assert connection_cap(wanted) == wanted
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised in (resource.RLIM_INFINITY, wanted + RESERVED_DESCRIPTORS)
        assert "descriptor limit" not in caplog.text
    else:
        assert connection_cap(hard) == hard - RESERVED_DESCRIPTORS
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert "descriptor limit" in caplog.text


BODY_TIMEOUT_S = 1
LARGE_BODY = b"x" * 4_000_000
"""Far more than aiohttp buffers before it stops reading a body the app has not read."""


@asynccontextmanager
async def _guarded(read_after_s: float) -> AsyncIterator[int]:
    """A worker's transport (1 s timeouts) around an app whose one route waits ``read_after_s``
    before it reads the body; the port it listens on."""

    async def late_reader(request: web.Request) -> web.Response:
        await asyncio.sleep(read_after_s)
        return web.json_response({"length": len(await request.read())})

    app = web.Application(client_max_size=2 * len(LARGE_BODY))
    app.router.add_post("/", late_reader)
    limits = ConnectionLimits(
        header_timeout_s=BODY_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
        idle_timeout_s=BODY_TIMEOUT_S,
        max_connections=100,
    )
    runner = GuardedAppRunner(app, limits)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def _post_head(length: int) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % length


async def test_a_body_the_app_reads_late_is_not_timed_out() -> None:
    """The whole body is sent at once, but the app reads it only after twice the body timeout:
    the client waits on the server, and gets its answer."""
    async with _guarded(read_after_s=2.5 * BODY_TIMEOUT_S) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_post_head(len(LARGE_BODY)) + LARGE_BODY)
            answer = await asyncio.wait_for(reader.read(-1), 10)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(b'{"length": %d}' % len(LARGE_BODY))


async def test_a_drip_after_the_app_reads_again_is_timed_out() -> None:
    """Once the app reads again, the rest of the body must come within the body timeout."""
    read_after_s = 2.0
    async with _guarded(read_after_s) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_post_head(len(LARGE_BODY) + 100) + LARGE_BODY)
            started = time.monotonic()

            async def drip() -> None:
                while True:
                    await asyncio.sleep(0.2)
                    writer.write(b"x")

            dripping = asyncio.ensure_future(drip())
            answer = await asyncio.wait_for(reader.read(-1), 10)
            dripping.cancel()
        finally:
            writer.close()
    assert answer == b""  # closed, unanswered
    took = time.monotonic() - started
    assert read_after_s + BODY_TIMEOUT_S <= took < read_after_s + BODY_TIMEOUT_S + 2.5, took


async def test_a_failing_sweep_keeps_sweeping(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in one sweep is logged once; the timeouts still apply afterwards."""
    failures: list[str] = []
    close = GuardedServer._close

    def close_failing_once(
        server: GuardedServer, connection: GuardedConnection, reason: str
    ) -> None:
        if not failures:
            failures.append(reason)
            raise RuntimeError("a bug in the sweep")
        close(server, connection, reason)

    monkeypatch.setattr(GuardedServer, "_close", close_failing_once)
    async with _guarded(read_after_s=0) as port:
        _, first = await asyncio.open_connection("127.0.0.1", port)
        first.write(b"POST / HTTP/1.1\r\n")  # headers never finished
        reader, second = await asyncio.open_connection("127.0.0.1", port)
        second.write(b"POST / HTTP/1.1\r\n")
        try:
            assert await asyncio.wait_for(reader.read(-1), 5 * BODY_TIMEOUT_S) == b""
        finally:
            first.close()
            second.close()
    assert failures
    assert caplog.text.count("the sweep of timed-out connections failed") == 1


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
    async with (
        aiohttp.ClientSession(headers=ADMIN) as session,
        session.get(url + "/metrics") as reply,
    ):
        assert reply.status == 200, await reply.text()
        text = await reply.text()
    found = re.findall(r'scanward_connections_closed_total\{reason="(\w+)"\} (\S+)', text)
    closed = {reason: float(value) for reason, value in found}
    return {
        r: closed.get(r, 0.0) for r in ("header_timeout", "body_timeout", "idle", "over_capacity")
    }
